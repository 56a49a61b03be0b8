"""Contriever — unsupervised dense retrieval by contrastive learning on independent crops (Izacard,
Caron, Hosseini, Riedel, Bojanowski, Joulin & Grave, TMLR 2022, "Unsupervised Dense Information
Retrieval with Contrastive Learning"; official code facebookresearch/contriever ``src/data.py``
(``randomcrop``, ``deleteword``, the dataset's ``__getitem__``), ``src/inbatch.py`` (in-batch
negatives) and ``src/moco.py`` (MoCo: momentum key encoder and a queue of keys)).

A positive pair is two *independent random crops* of the same text: each view is a span of
``U(ratio_min, ratio_max)`` × the chunk's tokens starting anywhere (the spans may overlap, so
lexical matching is learnt too; unlike ICT the two sides follow the same distribution). Each view
then loses every token with probability 0.1 (``deleteword``) and gets ``[CLS] … [SEP]``. Views are
mean-pooled; the loss is InfoNCE at τ = 0.05 against

* **in-batch negatives** (``inbatch.py``): the other keys of the batch, one encoder for both views;
* **MoCo** (``moco.py``, He et al. 2020): keys come from a *key encoder* θk, a momentum copy of the
  query encoder θq updated each step by θk ← m·θk + (1−m)·θq (no gradient), and the negatives are a
  FIFO queue of the keys of previous batches: the logits are ``[q·k+, q·queue] / τ`` with the
  positive in column 0; after the loss the batch's keys replace the oldest ones in the queue.
  The number of negatives (the queue size) is decoupled from the batch size.

Collapse tracking: ``moco.py`` logs the mean per-dimension standard deviation of the batch's
query and key vectors (``stdq``, ``stdk``); we log those too, plus the same statistic on a fixed
probe set of passages (``probe_std``), so runs are comparable step by step.

Deviations (scale and the bench): wiki-car passages are the documents and a chunk is a random
window of at most ``chunk_length`` = 128 tokens of one passage (official: consecutive 256-token
chunks of a token stream); a crop keeps at least one token (``int(n·ratio)`` can be 0 on a short
chunk); the bench's tiny BERT from scratch (the paper starts from BERT-base) with cosine scores
(normalised vectors, as the bench's protocol and every other method; the released script uses raw
dot products, which on the bench's random initialisation are ~45: logits ~900 at τ = 0.05, a
saturated softmax); the queue starts, as in ``moco.py``, with random unit vectors but is stored as
rows (K, H) rather than columns; batch 32 and ~120 steps instead of 2048 and 500k.
MoCo's two constants are scaled to that budget: the paper's m = 0.9995 gives the key encoder a
memory of 1/(1−m) = 2,000 steps and its queue (131,072 keys) holds the last 64 batches; over 120
steps m = 0.9995 would leave the key encoder at 94% of its random initialisation. We use m = 0.99
(a memory of 100 steps) and K = 256 keys (the last 8 batches, 8× the in-batch negatives). Faster
key encoders failed on this bench (wiki-car, seed 0, 150 steps): with m = 0.95 (K = 256) and m = 0.9
(K = 1024) the probe's per-dimension std fell from 0.012 to 0.004 and 0.000 — collapse, as He et
al. (2020) report for small m — while m = 0.99 spread it to 0.076.
"""
from __future__ import annotations

import copy
import hashlib
import json
import random
from dataclasses import asdict, dataclass

import numpy as np
import torch
import torch.nn.functional as F
from transformers import BertForMaskedLM, BertModel

from retrlab.encoders import pool, token_ids
from retrlab.losses import info_nce_loss, listwise_loss
from retrlab.artifacts import Checkpoint, cached_pretraining
from retrlab.pretraining.bench import PretrainConfig, TinyConfig, as_biencoder, new_mlm, pretrain
from retrlab.train import History
from retrlab.utils import default_device

MODES = ("inbatch", "moco")


@dataclass(frozen=True)
class ContrieverConfig:
    """Views, loss and MoCo constants (paper values in the comments)."""
    chunk_length: int = 128  # paper: 256-token chunks
    ratio_min: float = 0.05  # paper App. A.1 and ``contriever.sh``: crops of 5%–50% of the chunk
    ratio_max: float = 0.5
    deletion: float = 0.1  # ``--augmentation delete --prob_augmentation 0.1``
    queue_size: int = 256  # paper: 131,072 (scaled down, see the module docstring)
    momentum: float = 0.99  # paper: 0.9995 (scaled down, see the module docstring)
    probe_size: int = 64  # passages of the fixed collapse probe
    probe_every: int = 10  # steps between two probe measurements

    def key(self) -> str:
        return hashlib.sha1(json.dumps(asdict(self), sort_keys=True).encode()).hexdigest()[:8]


# --- views: independent cropping and token deletion (src/data.py) ---------------------------------
def crop_bounds(n_tokens: int, ratio_min: float, ratio_max: float,
                rng: random.Random) -> tuple[int, int]:
    """``randomcrop``: a span of ``int(n · U(ratio_min, ratio_max))`` tokens (at least 1) at a
    uniform start; returns ``(start, end)`` with ``0 <= start < end <= n_tokens``."""
    if n_tokens < 1:
        raise ValueError(f"cannot crop a chunk of {n_tokens} tokens")
    if not 0 < ratio_min <= ratio_max <= 1:
        raise ValueError(f"crop ratios must satisfy 0 < ratio_min <= ratio_max <= 1, "
                         f"got {ratio_min} and {ratio_max}")
    length = max(1, int(n_tokens * rng.uniform(ratio_min, ratio_max)))
    start = rng.randint(0, n_tokens - length)  # inclusive bounds, as the official code
    return start, start + length


def delete_tokens(tokens: list[int], p: float, rng: random.Random) -> list[int]:
    """``deleteword``: drop each token independently with probability ``p``."""
    if not 0 <= p < 1:
        raise ValueError(f"deletion probability must be in [0, 1), got {p}")
    return [t for t in tokens if rng.random() >= p]


def random_chunk(tokens: list[int], chunk_length: int, rng: random.Random) -> list[int]:
    """A random window of ``chunk_length`` tokens (the whole text when it is shorter)."""
    if chunk_length < 1:
        raise ValueError(f"chunk_length must be >= 1, got {chunk_length}")
    start = rng.randint(0, max(0, len(tokens) - chunk_length))
    return tokens[start:start + chunk_length]


def contriever_views(tokens: list[int], rng: random.Random,
                     config: ContrieverConfig = ContrieverConfig()) -> tuple[list[int], list[int]]:
    """Two views of one text's token ids (no special tokens): a chunk, two independent crops of
    it, then token deletion on each (the order of ``src/data.py``'s ``__getitem__``)."""
    chunk = random_chunk(tokens, config.chunk_length, rng)
    crops = [chunk[slice(*crop_bounds(len(chunk), config.ratio_min, config.ratio_max, rng))]
             for _ in range(2)]
    return tuple(delete_tokens(c, config.deletion, rng) for c in crops)


def collate_views(views: list[list[int]], tokenizer) -> dict[str, torch.Tensor]:
    """``[CLS] ids [SEP]`` per view, right-padded: ``input_ids`` and ``attention_mask`` (B, T)."""
    rows = [[tokenizer.cls_token_id] + v + [tokenizer.sep_token_id] for v in views]
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), tokenizer.pad_token_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, r in enumerate(rows):
        ids[i, :len(r)], mask[i, :len(r)] = torch.tensor(r), 1
    return {"input_ids": ids, "attention_mask": mask}


def embed_views(encoder: BertModel, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """(B, H) L2-normalised mean-pooled vectors (``contriever.py``'s average pooling)."""
    batch = {k: v.to(encoder.device) for k, v in batch.items()}
    hidden = encoder(**batch).last_hidden_state  # (B, T, H)
    return F.normalize(pool(hidden, batch["attention_mask"], "mean"), dim=-1)


# --- MoCo: logits, queue and momentum (src/moco.py) ------------------------------------------------
def moco_logits(queries: torch.Tensor, keys: torch.Tensor, queue: torch.Tensor) -> torch.Tensor:
    """(B, H) queries, (B, H) their keys, (K, H) queued keys -> (B, 1 + K) scores: column 0 is
    ``q_i · k_i`` (the positive), columns 1..K are ``q_i · queue_j`` (the negatives). The queue
    gets no gradient."""
    if queries.shape != keys.shape or queries.shape[1] != queue.shape[1]:
        raise ValueError(f"shapes do not match: queries {tuple(queries.shape)}, keys "
                         f"{tuple(keys.shape)}, queue {tuple(queue.shape)}")
    positive = (queries * keys).sum(-1, keepdim=True)  # (B, 1)
    return torch.cat([positive, queries @ queue.detach().T], dim=1)  # (B, 1 + K)


def moco_loss(queries: torch.Tensor, keys: torch.Tensor, queue: torch.Tensor,
              tau: float) -> torch.Tensor:
    """Cross-entropy over ``moco_logits / τ`` with every label 0 (the positive column)."""
    labels = torch.zeros(len(queries), dtype=torch.long, device=queries.device)
    return listwise_loss(moco_logits(queries, keys, queue), labels, tau)


def new_queue(size: int, dim: int, seed: int = 0) -> torch.Tensor:
    """(K, H) random unit vectors: ``moco.py`` starts its queue with normalised Gaussian noise."""
    generator = torch.Generator().manual_seed(seed)
    return F.normalize(torch.randn(size, dim, generator=generator), dim=-1)


def enqueue(queue: torch.Tensor, pointer: int, keys: torch.Tensor) -> tuple[torch.Tensor, int]:
    """``_dequeue_and_enqueue``: write the (B, H) ``keys`` over the B oldest rows of the (K, H) ring
    buffer, starting at ``pointer``; returns the new queue (the input is not changed) and pointer.
    Like the official code it asks for K to be a multiple of B, so a batch never wraps around."""
    size, batch = len(queue), len(keys)
    if keys.shape[1:] != queue.shape[1:]:
        raise ValueError(f"keys of shape {tuple(keys.shape)} do not fit a queue of {tuple(queue.shape)}")
    if size % batch:
        raise ValueError(f"queue size {size} must be a multiple of the batch size {batch}")
    if not 0 <= pointer < size or pointer % batch:
        raise ValueError(f"pointer {pointer} is not a batch boundary of a queue of {size}")
    updated = queue.clone()
    updated[pointer:pointer + batch] = keys.detach()
    return updated, (pointer + batch) % size


def momentum_average(key: torch.Tensor, query: torch.Tensor, momentum: float) -> torch.Tensor:
    """θk ← m·θk + (1−m)·θq for one tensor."""
    if not 0 <= momentum <= 1:
        raise ValueError(f"momentum must be in [0, 1], got {momentum}")
    return key * momentum + query * (1.0 - momentum)


@torch.no_grad()
def momentum_update(key_encoder: torch.nn.Module, query_encoder: torch.nn.Module,
                    momentum: float) -> None:
    """``_momentum_update_key_encoder``: every key parameter moves towards its query twin."""
    for key, query in zip(key_encoder.parameters(), query_encoder.parameters(), strict=True):
        key.copy_(momentum_average(key, query, momentum))


# --- collapse tracking ----------------------------------------------------------------------------
def dimension_std(vectors: torch.Tensor | np.ndarray) -> torch.Tensor:
    """(N, H) vectors -> (H,) standard deviation of each dimension over the N vectors. Its mean is
    ``moco.py``'s ``stdq``; it falls to 0 when all vectors collapse to one point. Unit vectors spread
    evenly over all H dimensions have ``std ≈ 1/√H`` per dimension."""
    vectors = torch.as_tensor(vectors, dtype=torch.float32)
    if vectors.ndim != 2 or len(vectors) < 2:
        raise ValueError(f"need (N >= 2, H) vectors, got shape {tuple(vectors.shape)}")
    return vectors.std(dim=0)


def probe_passages(texts: list[str], size: int) -> list[str]:
    """A fixed, evenly spaced sample of ``size`` texts: the collapse probe."""
    if not 2 <= size <= len(texts):
        raise ValueError(f"probe size must be in [2, {len(texts)}], got {size}")
    return [texts[i] for i in np.linspace(0, len(texts) - 1, size).astype(int)]


def probe_std(encoder: BertModel, tokenizer, probe: list[str],
              tiny: TinyConfig = TinyConfig()) -> torch.Tensor:
    """(H,) per-dimension std of the probe passages' vectors as the bench encodes them (eval mode)."""
    return dimension_std(as_biencoder(encoder, tokenizer, tiny).encode_passages(probe, progress=False))


# --- the two trainers ------------------------------------------------------------------------------
class ContrieverLoss:
    """``loss_fn`` for ``bench.pretrain``: each call draws ``batch_size`` texts, makes two views of
    each and returns (loss, logged). ``mode="moco"`` keeps the key encoder and the queue."""

    def __init__(self, mlm: BertForMaskedLM, tokenizer, texts: list[str], mode: str,
                 pretrain_config: PretrainConfig, config: ContrieverConfig = ContrieverConfig(),
                 tiny: TinyConfig = TinyConfig()) -> None:
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        if mode == "moco" and config.queue_size % pretrain_config.batch_size:
            raise ValueError(f"queue size {config.queue_size} must be a multiple of the batch size "
                             f"{pretrain_config.batch_size}")
        self.tokenizer, self.mode, self.config, self.tiny = tokenizer, mode, config, tiny
        self.batch_size, self.tau = pretrain_config.batch_size, pretrain_config.tau
        encoded = token_ids(tokenizer, texts, special_tokens=False)  # the whole texts: crops come from anywhere
        self.tokens = [ids for ids in encoded if ids]  # an empty text has nothing to crop
        if len(self.tokens) < self.batch_size:
            raise ValueError(f"{len(self.tokens)} non-empty texts, fewer than a batch of {self.batch_size}")
        self.probe, self.calls = probe_passages(texts, config.probe_size), 0
        if mode == "moco":
            # moco.py keeps the key encoder in train mode (dropout on) and never back-propagates into it
            self.key_encoder = copy.deepcopy(mlm.bert).requires_grad_(False).train()
            self.queue = new_queue(config.queue_size, mlm.config.hidden_size,
                                   pretrain_config.seed).to(mlm.device)
            self.pointer = 0

    def views(self, rng: random.Random) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        pairs = [contriever_views(ids, rng, self.config) for ids in rng.sample(self.tokens, self.batch_size)]
        return (collate_views([q for q, _ in pairs], self.tokenizer),
                collate_views([k for _, k in pairs], self.tokenizer))

    def __call__(self, mlm: BertForMaskedLM, rng: random.Random) -> tuple[torch.Tensor, dict[str, float]]:
        self.calls += 1
        logged = {}
        if (self.calls - 1) % self.config.probe_every == 0:  # the model step `calls` will update
            logged["probe_std"] = probe_std(mlm.bert, self.tokenizer, self.probe, self.tiny).mean().item()
        q_batch, k_batch = self.views(rng)
        queries = embed_views(mlm.bert, q_batch)  # (B, H)
        if self.mode == "inbatch":  # inbatch.py: one encoder, the other keys are the negatives
            keys = embed_views(mlm.bert, k_batch)
            loss = info_nce_loss(queries, keys, tau=self.tau)
            scores, targets = queries @ keys.T, torch.arange(len(queries))  # (B, B): the diagonal
        else:  # moco.py: momentum update, keys without gradient, queue negatives, then enqueue
            with torch.no_grad():
                momentum_update(self.key_encoder, mlm.bert, self.config.momentum)
                keys = embed_views(self.key_encoder, k_batch)
            loss = moco_loss(queries, keys, self.queue, self.tau)
            scores = moco_logits(queries, keys, self.queue)  # (B, 1 + K): column 0
            targets = torch.zeros(len(queries), dtype=torch.long)
            self.queue, self.pointer = enqueue(self.queue, self.pointer, keys)
        logged.update(contrastive=loss.item(),
                      accuracy=(scores.argmax(1).cpu() == targets).float().mean().item(),
                      stdq=queries.std(0).mean().item(), stdk=keys.std(0).mean().item())
        return loss, logged


def pretrain_contriever(tokenizer, texts: list[str], mode: str, pretrain_config: PretrainConfig,
                        config: ContrieverConfig = ContrieverConfig(), tiny: TinyConfig = TinyConfig(),
                        progress: bool = True, start: BertForMaskedLM | None = None) -> Checkpoint:
    """A fresh tiny BERT (or ``start``, trained in place) trained with Contriever's loss (``mode`` "inbatch" or "moco"); the history
    gets ``probe_std`` every ``config.probe_every`` steps and after the last one. A MoCo checkpoint's
    ``state`` holds the final queue and pointer; the encoder kept is the query encoder (``moco.py``'s
    ``get_encoder``)."""
    if pretrain_config.mlm_weight:
        raise ValueError("Contriever trains no MLM term: set mlm_weight=0")
    mlm = (new_mlm(tokenizer, tiny, pretrain_config.seed) if start is None else start).to(default_device())  # key encoder, queue follow
    loss_fn = ContrieverLoss(mlm, tokenizer, texts, mode, pretrain_config, config, tiny)
    history = pretrain(mlm, tokenizer, texts, pretrain_config, loss_fn=loss_fn, tiny=tiny, progress=progress)
    final = History([{"step": pretrain_config.steps + 1,
                      "probe_std": probe_std(mlm.bert, tokenizer, loss_fn.probe, tiny).mean().item()}])
    history.rows.extend(final.rows)  # the probe after the last update (step S + 1 = "before step S + 1")
    state = {"queue": loss_fn.queue, "queue_pointer": torch.tensor(loss_fn.pointer)} if mode == "moco" else {}
    return Checkpoint(mlm, history, state)


def cached_contriever(tokenizer, texts: list[str], steps: int, seed: int = 0, smoke: bool = False,
                      mode: str = "inbatch", config: ContrieverConfig = ContrieverConfig(),
                      batch_size: int = 32, tiny: TinyConfig = TinyConfig(),
                      progress: bool = True) -> Checkpoint:
    """``pretrain_contriever`` with the bench's optimiser settings (lr 5e-4, 10% warm-up, τ = 0.05),
    cached by mode, steps, seed (and any non-default ``config`` or batch size) so that comparison
    notebooks reuse the checkpoint."""
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    pretrain_config = PretrainConfig(steps=steps, batch_size=batch_size, tau=0.05, seed=seed)
    method = f"contriever-{mode}"
    if config != ContrieverConfig() or batch_size != 32:
        method += f"-{config.key()}-b{batch_size}"
    return cached_pretraining(
        method, lambda: pretrain_contriever(tokenizer, texts, mode, pretrain_config, config, tiny, progress),
        steps, seed, tokenizer, tiny, smoke)
