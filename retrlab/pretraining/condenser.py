"""Condenser and coCondenser — pretraining the [CLS] vector to carry the whole sequence.

* Condenser: Gao & Callan, EMNLP 2021, "Condenser: a Pre-training Architecture for Dense
  Retrieval"; official code luyug/Condenser ``modeling.py: CondenserForPretraining``.
* coCondenser: Gao & Callan, ACL 2022, "Unsupervised Corpus Aware Language Model Pre-training for
  Dense Passage Retrieval"; ``modeling.py: CoCondenserForPretraining``, ``run_co_pre_training.py``,
  ``data.py: CoCondenserDataset`` and ``trainer.py: CoCondenserPretrainer`` (gradient cache).

**Condenser.** The backbone's layers are split into early and late ones. A small head (2 BERT
layers) reads ``[late-layer CLS ; early-layer token states]`` and predicts the masked tokens with
the backbone's own MLM head; the backbone also does ordinary MLM on its last layer (``late_mlm``)::

    head input = cat(h_last[:, :1], h_skip[:, 1:])        h_skip = hidden_states[skip_from]
    L = MLM(lm_head(Head(head input))) + MLM(lm_head(h_last))

The head's tokens stopped before the late layers, so whatever the late layers learnt about the
sequence can reach the head only through the one CLS vector: the CLS is trained to *condense* the
passage. The head is thrown away after pretraining; retrieval uses the last layer's CLS.

**coCondenser** adds a corpus-level contrastive loss: each passage gives two random spans
(``random.sample(spans, 2)``), the two spans of a passage are positives, every other span in the
batch is a negative; scores are *raw dot products* of last-layer CLS vectors, no temperature, no
normalisation, the span itself masked out (``compute_contrastive_loss``: ``fill_diagonal_(-inf)``,
target ``co_target`` = the sibling span)::

    L_co(i) = -log exp(h_i · h_sib(i)) / Σ_{k ≠ i} exp(h_i · h_k),    L = MLM terms + mean_i L_co(i)

It runs as a second stage, continuing a Condenser (backbone *and* head), because the contrastive
loss is unstable from scratch (paper); large batches come from the gradient cache
(``retrlab.pretraining.grad_cache``).

Deviations (scale and bench): the bench's 2-layer, 128-wide BERT, so ``skip_from = 1`` (early =
layer 1, late = layer 2; official: 6 of 12 — the same halfway split), with the official 2 head
layers; token-level 15% masking (the bench's MLM collator, as in the MLM baseline) instead of
whole-word masking; passages cut at 64 tokens for Condenser; coCondenser spans of ``span_length``
tokens (32 by default; official ~128-token chunks of MS MARCO passages, Condenser issue #5) from
the untruncated passage; the MLM sums are divided by the batch's number of masked tokens so that
a chunked (gradient-cache) step gives the full-batch gradient exactly; batch 32 passages (64
spans) instead of 2048; minutes of CPU instead of days of GPUs.
"""
from __future__ import annotations

import copy
import random
from dataclasses import dataclass, replace

import torch
import torch.nn.functional as F
from torch import nn
from transformers import BertConfig, BertForMaskedLM, DataCollatorForLanguageModeling
from transformers.masking_utils import create_bidirectional_mask
from transformers.models.bert.modeling_bert import BertLayer

from retrlab.artifacts import Checkpoint, cached_pretraining
from retrlab.pretraining.bench import PretrainConfig, TinyConfig, new_mlm, pretrain
from retrlab.pretraining.grad_cache import Chunk, grad_cache_step, split_batch

CONDENSER_TINY = TinyConfig(pooling="cls")  # the bench model, read through its last-layer CLS


@dataclass(frozen=True)
class CondenserConfig:
    skip_from: int = 1  # the head reads token states after this many layers (official: 6 of 12)
    head_layers: int = 2  # official ``n_head_layers``
    span_length: int = 32  # coCondenser: tokens per span
    chunk_size: int = 16  # coCondenser: spans per gradient-cache chunk (0: no cache, one forward)
    co_weight: float = 1.0  # coCondenser: weight of the span contrastive loss (0: Condenser continued)


# --- the Condenser head --------------------------------------------------------------------------
class CondenserHead(nn.Module):
    """``head_layers`` BERT layers over ``[late CLS ; early tokens]`` (``c_head`` in ``modeling.py``)."""

    def __init__(self, config: BertConfig, head_layers: int = 2) -> None:
        super().__init__()
        if head_layers < 1:
            raise ValueError(f"the head needs at least one layer, got {head_layers}")
        self.config = config
        self.layers = nn.ModuleList(BertLayer(config) for _ in range(head_layers))

    def forward(self, hidden: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """(B, T, H) head input + (B, T) padding mask -> (B, T, H), attending like the backbone."""
        mask = create_bidirectional_mask(self.config, hidden, attention_mask)
        for layer in self.layers:
            hidden = layer(hidden, mask)
        return hidden


def new_head(mlm: BertForMaskedLM, head_layers: int = 2, seed: int = 0) -> CondenserHead:
    """A head of the backbone's layer shape, initialised as the backbone was (``_init_weights``)."""
    torch.manual_seed(seed)
    head = CondenserHead(mlm.config, head_layers)
    head.apply(mlm._init_weights)
    return head


def head_input(hidden_states: tuple[torch.Tensor, ...], skip_from: int) -> torch.Tensor:
    """``cat(last layer's CLS, layer skip_from's tokens 1:)``: (B, T, H) from the backbone's
    ``hidden_states`` (embeddings, layer 1, ..., layer L)."""
    layers = len(hidden_states) - 1
    if not 0 <= skip_from < layers:
        raise ValueError(f"skip_from must name an early layer in [0, {layers - 1}] (0 = embeddings), "
                         f"got {skip_from}: the head must not see the last layer's tokens")
    return torch.cat([hidden_states[-1][:, :1], hidden_states[skip_from][:, 1:]], dim=1)


def masked_lm_sum(mlm: BertForMaskedLM, hidden: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Summed cross-entropy of the shared MLM head (``mlm.cls``) at the labelled positions. The head
    runs on those positions only: the vocabulary projection is the expensive part (MiniLM: 30k words)."""
    keep = labels != -100  # (B, T)
    return F.cross_entropy(mlm.cls(hidden[keep]), labels[keep], reduction="sum")


@dataclass
class CondenserOutput:
    head_mlm: torch.Tensor  # MLM loss through the head (the CLS bottleneck)
    late_mlm: torch.Tensor  # MLM loss on the backbone's last layer
    cls: torch.Tensor  # (B, H) last-layer CLS vectors, the retrieval representation


def condenser_forward(mlm: BertForMaskedLM, head: CondenserHead, batch: Chunk, skip_from: int,
                      masked_tokens: int | None = None) -> CondenserOutput:
    """One Condenser forward on a masked ``batch`` (input_ids, attention_mask, labels). The MLM
    sums are divided by ``masked_tokens`` (default: this batch's count; a gradient-cache chunk
    passes the whole batch's so that the chunks add up to the full-batch mean)."""
    labels = batch["labels"]
    masked_tokens = masked_tokens or int((labels != -100).sum().clamp(min=1))
    out = mlm.bert(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                   output_hidden_states=True)
    head_hidden = head(head_input(out.hidden_states, skip_from), batch["attention_mask"])
    return CondenserOutput(masked_lm_sum(mlm, head_hidden, labels) / masked_tokens,
                           masked_lm_sum(mlm, out.last_hidden_state, labels) / masked_tokens,
                           out.last_hidden_state[:, 0])


def cls_swap_cost(mlm: BertForMaskedLM, head: CondenserHead, batch: Chunk, skip_from: int) -> float:
    """Head MLM loss (nats/token) with every row's late CLS swapped for the next row's, minus the
    loss with its own: > 0 when the head reads text-specific content from the CLS (the bottleneck
    at work), 0 when the CLS tells it nothing about *this* text. No gradients; ``batch`` is masked."""
    if len(batch["input_ids"]) < 2:
        raise ValueError("swapping CLS vectors needs a batch of at least 2 texts")
    labels, mask = batch["labels"], batch["attention_mask"]
    with torch.no_grad():
        states = mlm.bert(input_ids=batch["input_ids"], attention_mask=mask,
                          output_hidden_states=True).hidden_states
        own = head_input(states, skip_from)  # (B, T, H)
        swapped = torch.cat([own[:, :1].roll(1, dims=0), own[:, 1:]], dim=1)  # row i gets row i-1's CLS
        masked = (labels != -100).sum().clamp(min=1)
        losses = [masked_lm_sum(mlm, head(x, mask), labels) / masked for x in (own, swapped)]
    return (losses[1] - losses[0]).item()


def masked_batch(tokenizer, token_ids: list[list[int]], device: torch.device | None = None) -> Chunk:
    """``[CLS] ids [SEP]`` per row, padded, with BERT's 15% masking (the bench's MLM collator)."""
    collator = DataCollatorForLanguageModeling(tokenizer, mlm_probability=0.15)
    rows = [[tokenizer.cls_token_id, *ids, tokenizer.sep_token_id] for ids in token_ids]
    return {k: v.to(device) for k, v in collator([{"input_ids": r} for r in rows]).items()}


def architecture(mlm: BertForMaskedLM, head: CondenserHead, tokenizer, text: str,
                 skip_from: int, max_length: int = 64) -> list[tuple[str, tuple[int, ...]]]:
    """(what, shape) of every tensor on the Condenser path for one text, in order (for printing)."""
    ids = tokenizer(text, add_special_tokens=False, truncation=True, max_length=max_length - 2)["input_ids"]
    batch = masked_batch(tokenizer, [ids], mlm.device)
    with torch.no_grad():
        out = mlm.bert(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                       output_hidden_states=True)
        rows = [("input_ids [CLS] tokens [SEP] (masked)", tuple(batch["input_ids"].shape))]
        for i, h in enumerate(out.hidden_states):
            last = i == len(out.hidden_states) - 1
            role = ("embeddings" if i == 0 else f"backbone layer {i}") + (
                " = EARLY: its tokens 1: go to the head" if i == skip_from else
                " = LAST: its CLS goes to the head, all tokens to the late MLM" if last else "")
            rows.append((f"hidden_states[{i}] {role}", tuple(h.shape)))
        hidden = head_input(out.hidden_states, skip_from)
        rows.append(("head input cat(last[:, :1], early[:, 1:])", tuple(hidden.shape)))
        mask = create_bidirectional_mask(head.config, hidden, batch["attention_mask"])
        for i, layer in enumerate(head.layers, 1):
            hidden = layer(hidden, mask)
            rows.append((f"head layer {i}", tuple(hidden.shape)))
        rows.append(("MLM logits from the head (shared mlm.cls)", tuple(mlm.cls(hidden).shape)))
        late_logits = mlm.cls(out.last_hidden_state)
        rows.append(("MLM logits from the last layer (late MLM)", tuple(late_logits.shape)))
        rows.append(("retrieval vector: last layer's CLS", tuple(out.last_hidden_state[:, 0].shape)))
    return rows


# --- coCondenser: spans and the span contrastive loss -------------------------------------------
def span_bounds(n_tokens: int, span_length: int, rng: random.Random) -> list[tuple[int, int]]:
    """Two distinct, non-overlapping ``[start, end)`` spans of one passage of ``n_tokens`` tokens.

    The passage is cut into consecutive chunks of ``L = min(span_length, n_tokens // 2)`` tokens
    from a random offset, and two chunks are drawn (``random.sample(spans, 2)`` in ``data.py``).
    """
    if span_length < 1:
        raise ValueError(f"span_length must be positive, got {span_length}")
    if n_tokens < 2:
        raise ValueError(f"a passage of {n_tokens} token(s) cannot give two spans")
    length = min(span_length, n_tokens // 2)
    chunks = n_tokens // length
    offset = rng.randrange(n_tokens - chunks * length + 1)
    starts = rng.sample(range(chunks), 2)
    return [(offset + s * length, offset + (s + 1) * length) for s in starts]


def span_batch_ids(tokenizer, texts: list[str], span_length: int, rng: random.Random) -> list[list[int]]:
    """Token ids of 2 spans per text, siblings adjacent: [t0 span a, t0 span b, t1 span a, ...]."""
    encoded = tokenizer(texts, add_special_tokens=False)["input_ids"]
    return [ids[start:end] for ids in encoded for start, end in span_bounds(len(ids), span_length, rng)]


def sibling_targets(n_spans: int) -> torch.Tensor:
    """The positive of span i is its sibling i ^ 1: [1, 0, 3, 2, ...] (``co_target``)."""
    if n_spans < 2 or n_spans % 2:
        raise ValueError(f"spans come in sibling pairs: need an even count >= 2, got {n_spans}")
    return torch.arange(n_spans) ^ 1


def span_contrastive_loss(cls: torch.Tensor) -> torch.Tensor:
    """Mean over spans of ``-log softmax(h_i · h_k, k ≠ i)[sibling(i)]`` on raw dot products (2n, H)."""
    scores = cls @ cls.T  # (2n, 2n), no temperature, no normalisation, as the official code
    scores = scores.masked_fill(torch.eye(len(cls), dtype=torch.bool, device=cls.device), float("-inf"))
    return F.cross_entropy(scores, sibling_targets(len(cls)).to(cls.device))


def cocondenser_step(mlm: BertForMaskedLM, head: CondenserHead, batch: Chunk,
                     config: CondenserConfig) -> dict[str, float]:
    """One coCondenser step's backward of ``MLM terms + co_weight × span contrastive`` (gradients
    accumulate into ``.grad``): chunked through the gradient cache when ``config.chunk_size`` > 0,
    else one full-batch forward. Returns the (unweighted) losses."""
    masked_tokens = int((batch["labels"] != -100).sum().clamp(min=1))

    def forward(chunk: Chunk) -> tuple[torch.Tensor, torch.Tensor]:
        out = condenser_forward(mlm, head, chunk, config.skip_from, masked_tokens)
        return out.cls, out.head_mlm + out.late_mlm

    if config.chunk_size <= 0 or config.co_weight == 0:  # no cache needed without the coupling loss
        cls, mlm_part = forward(batch)
        co = span_contrastive_loss(cls)
        (config.co_weight * co + mlm_part).backward()
        return {"co": co.item(), "mlm": mlm_part.item()}

    def represent(chunk: Chunk) -> torch.Tensor:  # the graph-less pass needs only the backbone's CLS
        out = mlm.bert(input_ids=chunk["input_ids"], attention_mask=chunk["attention_mask"])
        return out.last_hidden_state[:, 0]

    result = grad_cache_step(split_batch(batch, config.chunk_size), represent,
                             lambda cls: config.co_weight * span_contrastive_loss(cls), forward)
    return {"co": result.loss / config.co_weight, "mlm": result.local_loss}


# --- pretraining and cached builders ------------------------------------------------------------
def pretrain_condenser(tokenizer, texts: list[str], config: PretrainConfig,
                       condenser: CondenserConfig = CondenserConfig(), tiny: TinyConfig = CONDENSER_TINY,
                       progress: bool = True, start: BertForMaskedLM | None = None) -> Checkpoint:
    """Condenser from scratch (or continuing ``start``, trained in place): each step
    ``config.batch_size`` random passages (cut at ``tiny.passage_max_length``), masked once, head MLM +
    late MLM. ``state`` holds the head."""
    mlm = new_mlm(tokenizer, tiny, config.seed) if start is None else start
    head = new_head(mlm, condenser.head_layers, config.seed)
    max_tokens = tiny.passage_max_length - 2

    def loss_fn(model: BertForMaskedLM, rng: random.Random):
        ids = tokenizer(rng.sample(texts, config.batch_size), add_special_tokens=False, truncation=True,
                        max_length=max_tokens)["input_ids"]
        out = condenser_forward(model, head, masked_batch(tokenizer, ids, model.device), condenser.skip_from)
        return out.head_mlm + out.late_mlm, {"head_mlm": out.head_mlm.item(), "late_mlm": out.late_mlm.item()}

    history = pretrain(mlm, tokenizer, texts, replace(config, mlm_weight=0.0), loss_fn=loss_fn, tiny=tiny,
                       progress=progress, extra=head)
    return Checkpoint(mlm, history, {f"head.{k}": v for k, v in head.state_dict().items()})


def head_from(checkpoint: Checkpoint, head_layers: int = 2) -> CondenserHead:
    """The trained head stored in a Condenser checkpoint's ``state``."""
    weights = {k.removeprefix("head."): v for k, v in checkpoint.state.items() if k.startswith("head.")}
    if not weights:
        raise ValueError("this checkpoint holds no Condenser head (coCondenser must continue a Condenser)")
    head = CondenserHead(checkpoint.mlm.config, head_layers)
    head.load_state_dict(weights)
    return head


def pretrain_cocondenser(tokenizer, texts: list[str], start: Checkpoint, config: PretrainConfig,
                         condenser: CondenserConfig = CondenserConfig(), tiny: TinyConfig = CONDENSER_TINY,
                         progress: bool = True) -> Checkpoint:
    """coCondenser's second stage: continue ``start`` (a Condenser: backbone and head) with
    ``config.batch_size`` passages per step, 2 spans each, MLM + ``co_weight`` × span contrastive."""
    mlm = copy.deepcopy(start.mlm)
    head = head_from(start, condenser.head_layers)
    candidates = [t for t in texts if len(t.split()) >= 4]  # a passage needs two spans

    def loss_fn(model: BertForMaskedLM, rng: random.Random):
        ids = span_batch_ids(tokenizer, rng.sample(candidates, config.batch_size), condenser.span_length, rng)
        logged = cocondenser_step(model, head, masked_batch(tokenizer, ids, model.device), condenser)
        return torch.tensor(condenser.co_weight * logged["co"] + logged["mlm"]), logged

    history = pretrain(mlm, tokenizer, texts, replace(config, mlm_weight=0.0), loss_fn=loss_fn, tiny=tiny,
                       progress=progress, extra=head, loss_fn_backward=True)
    return Checkpoint(mlm, history, {f"head.{k}": v for k, v in head.state_dict().items()})


def cached_condenser(tokenizer, texts: list[str], steps: int, seed: int = 0, smoke: bool = False,
                     condenser: CondenserConfig = CondenserConfig(), batch_size: int = 32,
                     tiny: TinyConfig = CONDENSER_TINY, progress: bool = True) -> Checkpoint:
    """The Condenser checkpoint for ``steps`` and ``seed`` (bench defaults otherwise), cached."""
    config = PretrainConfig(steps=steps, batch_size=batch_size, seed=seed)
    return cached_pretraining(
        f"condenser-skip{condenser.skip_from}-head{condenser.head_layers}-b{batch_size}",
        lambda: pretrain_condenser(tokenizer, texts, config, condenser, tiny, progress),
        steps, seed, tokenizer, tiny, smoke)


def cached_cocondenser(tokenizer, texts: list[str], steps: int, condenser_steps: int, seed: int = 0,
                       smoke: bool = False, condenser: CondenserConfig = CondenserConfig(),
                       batch_size: int = 32, tiny: TinyConfig = CONDENSER_TINY,
                       progress: bool = True) -> Checkpoint:
    """coCondenser: the cached Condenser of ``condenser_steps`` continued for ``steps`` steps of
    ``batch_size`` passages (2 spans each). ``condenser.co_weight = 0`` gives the control run:
    the same continuation without the contrastive loss. ``chunk_size`` is not part of the cache
    key: the gradient cache gives the same gradients for any chunk size."""
    start = cached_condenser(tokenizer, texts, condenser_steps, seed, smoke, condenser, batch_size, tiny,
                             progress)
    config = PretrainConfig(steps=steps, batch_size=batch_size, seed=seed)
    name = "cocondenser" if condenser.co_weight > 0 else "condenser-continued"
    method = (f"{name}-from{condenser_steps}-skip{condenser.skip_from}-head{condenser.head_layers}"
              f"-span{condenser.span_length}-co{condenser.co_weight:g}-b{batch_size}")
    return cached_pretraining(
        method, lambda: pretrain_cocondenser(tokenizer, texts, start, config, condenser, tiny, progress),
        steps, seed, tokenizer, tiny, smoke)
