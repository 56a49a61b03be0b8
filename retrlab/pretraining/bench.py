"""The pretraining bench: one tokenizer, one tiny BERT, one corpus, one evaluation protocol.

Every retrieval-oriented pretraining method in retrlab (ICT, BFS/WLP, PROP, and the later
Condenser, coCondenser, Contriever, RetroMAE, SEED) is trained and judged on the same bench, so
their numbers sit in one table:

* **tokenizer** — a WordPiece vocabulary of a few thousand entries trained on the wiki-car passages
  with HF ``tokenizers`` (BERT's normaliser and pre-tokeniser; Devlin et al. 2019). On ~0.45M words
  a small vocabulary sees each entry far more often than MiniLM's 30k one, so a model trained from
  scratch learns faster (docs/design.md, the pretraining bench). Training it is deterministic; it is cached atomically.
* **model** — ``new_mlm`` builds a ``BertForMaskedLM`` from ``TinyConfig``; ``as_biencoder`` wraps
  its encoder (``mlm.bert``, shared weights) as a ``BiEncoder`` and ``TinyCrossEncoder`` wraps it as a
  re-ranker. A method trains the MLM object (contrastive loss on ``.bert`` and/or MLM loss through
  the head) and hands the encoder on.
* **pretraining loop** — ``pretrain``: a *pair task* gives (queries, passages) text pairs per step,
  trained with in-batch InfoNCE (DPR/ORQA's in-batch softmax), plus an optional MLM term; any other
  method passes its own ``loss_fn``. Checkpoints are cached by method + steps + seed
  (``retrlab.artifacts.cached_pretraining``, verified on load), so comparison notebooks reuse them.
* **protocol** — ``run_protocol``: (1) zero-shot retrieval on wiki-car test right after
  pretraining; (2) the same short fine-tuning (``retrlab.train.train``, in-batch negatives, a fixed
  step budget) on all training queries and (3) on a seeded 10% of them, each followed by test
  metrics. Baselines on the same protocol: random initialisation and MLM-only pretraining.

Using the bench for a new method (what ``08``/``09`` do)::

    tok = bench_tokenizer(data)                      # cached, deterministic
    texts = corpus_texts(data)
    ckpt = pretrain_cached("ict", tok, texts, PretrainConfig(steps=120), task=ict_task(data))
    result = run_protocol(as_biencoder(ckpt.mlm.bert, tok), data, ProtocolConfig(steps=60))
    print(protocol_table({"ICT": result}))

A method with its own loss (Condenser's head, RetroMAE's decoder) writes a ``build()`` that calls
``new_mlm`` then ``pretrain(..., loss_fn=..., extra=head)`` and returns ``Checkpoint(mlm, history,
state)``, and caches it with ``cached_pretraining(method, build, steps, seed, tok)``.

The pretraining text is every wiki-car passage, test articles included: unsupervised pretraining on
the target corpus is standard (coCondenser pretrains on the MS MARCO corpus). It sees no query and
no label. Scale, honestly: ~4,400 passages and a minute of CPU per method, against BERT's 3.3B
words and days of TPU. Expect small effects and say so.
"""
from __future__ import annotations

import copy
import functools
import hashlib
import json
import random
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
from transformers import (BertConfig, BertForMaskedLM, BertModel, DataCollatorForLanguageModeling,
                          PreTrainedTokenizerFast)

from retrlab.artifacts import Checkpoint, cached_pretraining
from retrlab.cache import cached_dir
from retrlab.data.dataset import RetrievalData
from retrlab.encoders import BiEncoder
from retrlab.evaluation import bm25_run, dense_run, evaluate_run
from retrlab.losses import info_nce_loss
from retrlab.negatives.uniform import uniform_from_pool
from retrlab.pool import CandidatePool, bm25_pool
from retrlab.train import Batch, History, Hook, Learner, Stage, TrainConfig, run, train

SPECIAL_TOKENS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]

# (queries, passages) for one step: a pair task draws ``batch_size`` pairs with ``rng``
PairTask = Callable[[random.Random, int], tuple[list[str], list[str]]]


@dataclass(frozen=True)
class TinyConfig:
    """The tiny BERT and its input lengths (2 layers of width 128: 0.40M parameters in the layers,
    0.58M in the embeddings)."""
    vocab_size: int = 4000
    layers: int = 2
    hidden: int = 128
    heads: int = 2
    query_max_length: int = 32
    passage_max_length: int = 64
    pooling: str = "mean"  # a bag-of-words start for a from-scratch model; Condenser needs "cls"

    def key(self) -> str:
        return hashlib.sha1(json.dumps(asdict(self), sort_keys=True).encode()).hexdigest()[:8]


# --- corpus and tokenizer ------------------------------------------------------------------------
def corpus_texts(data: RetrievalData) -> list[str]:
    """The pretraining text: every passage as the encoder sees it ("Title: body"), corpus order."""
    return data.passage_texts()


def train_wordpiece(texts: list[str], vocab_size: int) -> PreTrainedTokenizerFast:
    """A BERT-style (lower-cased) WordPiece tokenizer trained on ``texts``.

    HF's trainer numbers the learnt entries in an order that changes from run to run (hash-map
    order breaks ties), so the vocabulary is renumbered canonically: special tokens, then the rest
    sorted. WordPiece encodes by longest match, so the numbering changes ids, never the pieces.
    """
    if vocab_size < len(SPECIAL_TOKENS) + 100:
        raise ValueError(f"vocab_size {vocab_size} is too small for a WordPiece vocabulary")
    trained = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    trained.normalizer = normalizers.BertNormalizer(lowercase=True)
    trained.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    trained.train_from_iterator(texts, trainers.WordPieceTrainer(
        vocab_size=vocab_size, special_tokens=SPECIAL_TOKENS, show_progress=False))
    pieces = SPECIAL_TOKENS + sorted(set(trained.get_vocab()) - set(SPECIAL_TOKENS))
    tok = Tokenizer(models.WordPiece({p: i for i, p in enumerate(pieces)}, unk_token="[UNK]"))
    tok.normalizer, tok.pre_tokenizer = trained.normalizer, trained.pre_tokenizer
    tok.decoder = decoders.WordPiece()
    tok.post_processor = processors.TemplateProcessing(  # [CLS] a [SEP] (b [SEP]), as BERT
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", 2), ("[SEP]", 3)])
    return PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]", pad_token="[PAD]",
                                   cls_token="[CLS]", sep_token="[SEP]", mask_token="[MASK]",
                                   model_input_names=["input_ids", "token_type_ids", "attention_mask"])


def bench_tokenizer(data: RetrievalData, vocab_size: int = 4000) -> PreTrainedTokenizerFast:
    """The bench's WordPiece tokenizer, trained once per corpus and vocabulary size and cached."""
    texts = corpus_texts(data)
    fingerprint = hashlib.sha1("\n".join(texts).encode()).hexdigest()[:10]
    folder = cached_dir(f"pretraining/tokenizer-{vocab_size}-{fingerprint}",
                        lambda tmp: train_wordpiece(texts, vocab_size).save_pretrained(tmp))
    return _read_tokenizer(str(folder))


@functools.cache
def _read_tokenizer(folder: str) -> PreTrainedTokenizerFast:
    """One tokenizer object per cached folder and process: reading it takes about 50 ms, and a study asks
    for it dozens of times (one object also lets ``token_ids`` remember its tokenizations)."""
    return PreTrainedTokenizerFast.from_pretrained(folder)


# --- models ---------------------------------------------------------------------------------------
def new_mlm(tokenizer, config: TinyConfig = TinyConfig(), seed: int = 0) -> BertForMaskedLM:
    """A randomly initialised tiny BERT with an MLM head (``.bert`` is the encoder)."""
    bert_config = BertConfig(vocab_size=len(tokenizer), hidden_size=config.hidden,
                             num_hidden_layers=config.layers, num_attention_heads=config.heads,
                             intermediate_size=4 * config.hidden, max_position_embeddings=512,
                             pad_token_id=tokenizer.pad_token_id)
    bert_config._attn_implementation = "eager"  # B-PROP reads attention maps
    torch.manual_seed(seed)
    return BertForMaskedLM(bert_config)


def as_biencoder(encoder: BertModel, tokenizer, config: TinyConfig = TinyConfig()) -> BiEncoder:
    """The bench's bi-encoder around ``encoder`` (weights shared, not copied): cosine scores."""
    return BiEncoder(encoder, tokenizer, pooling=config.pooling, normalize=True,
                     query_max_length=config.query_max_length,
                     passage_max_length=config.passage_max_length)


class TinyCrossEncoder(torch.nn.Module):
    """``score = w · h_[CLS] + b`` over ``[CLS] query [SEP] passage [SEP]`` (BERT re-ranker,
    Nogueira & Cho 2019; PROP's model is this one). ``max_length`` caps the pair's tokens.

    Unlike ``retrlab.encoders.CrossEncoder`` (an HF sequence-classification model) it shares its
    encoder with the bench's ``BertForMaskedLM``, so MLM and re-ranking train one set of weights."""

    def __init__(self, encoder: BertModel, tokenizer, max_length: int = 96) -> None:
        super().__init__()
        self.encoder, self.tokenizer, self.max_length = encoder, tokenizer, max_length
        self.head = torch.nn.Linear(encoder.config.hidden_size, 1)

    def tokenize(self, queries: list[str], passages: list[str]) -> dict[str, torch.Tensor]:
        batch = self.tokenizer(queries, passages, padding=True, truncation="only_second",
                               max_length=self.max_length, return_tensors="pt")
        return {k: v.to(self.head.weight.device) for k, v in batch.items()}

    def score_hidden(self, hidden: torch.Tensor) -> torch.Tensor:
        """(B, T, H) last hidden states -> (B,) scores from the [CLS] vector."""
        return self.head(hidden[:, 0]).squeeze(-1)

    def forward(self, queries: list[str], passages: list[str]) -> torch.Tensor:
        batch = self.tokenize(queries, passages)
        return self.score_hidden(self.encoder(**batch).last_hidden_state)

    @torch.inference_mode()
    def predict(self, queries: list[str], passages: list[str], batch_size: int = 64) -> list[float]:
        was_training = self.training
        self.eval()
        out = [s for i in range(0, len(queries), batch_size)
               for s in self(queries[i:i + batch_size], passages[i:i + batch_size]).tolist()]
        self.train(was_training)
        return out


# --- pretraining -----------------------------------------------------------------------------------
def mlm_loss(mlm: BertForMaskedLM, tokenizer, texts: list[str], max_length: int,
             probability: float = 0.15) -> torch.Tensor:
    """BERT's masked-LM loss (15% of tokens; 80% [MASK], 10% random, 10% kept) on ``texts``."""
    collator = DataCollatorForLanguageModeling(tokenizer, mlm_probability=probability)
    encoded = tokenizer(texts, truncation=True, max_length=max_length)
    batch = collator([{"input_ids": ids} for ids in encoded["input_ids"]])
    batch = {k: v.to(mlm.device) for k, v in batch.items()}
    labels = batch.pop("labels")
    keep = labels != -100  # the head runs on the masked positions only (the projection to the vocabulary
    hidden = mlm.bert(**batch).last_hidden_state  # is the expensive part); the same mean as ``mlm(...).loss``
    return F.cross_entropy(mlm.cls(hidden[keep]), labels[keep])


def contrastive_pair_loss(mlm: BertForMaskedLM, tokenizer, queries: list[str], passages: list[str],
                          config: TinyConfig, tau: float) -> torch.Tensor:
    """In-batch InfoNCE of (query_i, passage_i) pairs on the bi-encoder built around ``mlm.bert``."""
    model = as_biencoder(mlm.bert, tokenizer, config)
    return info_nce_loss(model.embed_queries(queries), model.embed_passages(passages), tau=tau)


@dataclass
class PretrainConfig:
    steps: int = 150
    batch_size: int = 32
    lr: float = 5e-4  # from scratch, tiny: far above fine-tuning rates
    warmup_ratio: float = 0.1
    tau: float = 0.05
    mlm_weight: float = 0.0  # weight of the MLM term added to the task loss
    seed: int = 0


def pretrain_step(mlm: BertForMaskedLM, tokenizer, texts: list[str], config: PretrainConfig,
                  rng: random.Random, task: PairTask | None = None, loss_fn: Callable | None = None,
                  tiny: TinyConfig = TinyConfig(), backward: bool = True) -> Stage:
    """The engine's step for a pretraining objective: ``loss_fn`` or the pair ``task``, plus MLM."""
    def fn(step: int) -> tuple[torch.Tensor, dict]:
        loss, logged = torch.zeros((), device=mlm.device), {}
        if loss_fn is not None:
            loss, logged = loss_fn(mlm, rng)
        elif task is not None:
            queries, passages = task(rng, config.batch_size)
            loss = contrastive_pair_loss(mlm, tokenizer, queries, passages, tiny, config.tau)
            logged["task"] = loss.item()
        if config.mlm_weight > 0:
            mlm_part = mlm_loss(mlm, tokenizer, rng.sample(texts, config.batch_size), tiny.passage_max_length)
            loss = loss + config.mlm_weight * mlm_part
            logged["mlm"] = mlm_part.item()
        return loss, logged

    return Stage(fn, backward=backward)


def pretrain(mlm: BertForMaskedLM, tokenizer, texts: list[str], config: PretrainConfig,
             task: PairTask | None = None, loss_fn: Callable | None = None,
             tiny: TinyConfig = TinyConfig(), progress: bool = True,
             extra: torch.nn.Module | None = None, loss_fn_backward: bool = False,
             state: dict | None = None, checkpoint: str | Path | None = None,
             checkpoint_every: int = 0, hooks: list[Hook] = ()) -> History:
    """Train ``mlm`` in place on the engine (``retrlab.train.run``): ``task`` pairs and/or MLM on ``texts``.

    ``loss_fn(mlm, rng) -> (loss, logged dict)`` replaces the built-in loss (PROP, Condenser...);
    ``extra`` holds modules outside ``mlm`` that it trains too (a scoring head, a decoder).
    ``loss_fn_backward=True``: ``loss_fn`` back-propagates by itself (a gradient cache does, chunk
    by chunk) and returns its loss detached; the loop only clips and steps. ``state``: whatever else
    a resume must restore (a MoCo queue...). Without ``task`` and ``loss_fn`` this is MLM-only
    pretraining (the baseline).
    """
    if task is None and loss_fn is None and config.mlm_weight <= 0:
        raise ValueError("nothing to train: give a task, a loss_fn or mlm_weight > 0")
    if loss_fn_backward and (loss_fn is None or config.mlm_weight > 0):
        raise ValueError("loss_fn_backward needs a loss_fn and mlm_weight = 0 (it back-propagates alone)")
    rng = random.Random(config.seed)
    modules = [mlm] + ([extra] if extra is not None else [])
    learner = Learner(modules, config.lr, config.steps, warmup_ratio=config.warmup_ratio)
    stage = pretrain_step(mlm, tokenizer, texts, config, rng, task, loss_fn, tiny, not loss_fn_backward)
    return run({"model": learner}, stage, config.steps, seed=config.seed, hooks=hooks, hook_model=mlm,
               state={"rng": rng, **(state or {})}, checkpoint=checkpoint,
               checkpoint_every=checkpoint_every, progress=progress, desc="pretrain")


def saved_module_state(checkpoint: Checkpoint, prefix: str, method: str) -> dict[str, torch.Tensor]:
    """The tensors a method saved in ``checkpoint.state`` under ``prefix`` (e.g. ``"decoder."``),
    with the prefix removed: ready for ``module.load_state_dict``."""
    state = {k.removeprefix(prefix): v for k, v in checkpoint.state.items() if k.startswith(prefix)}
    if not state:
        raise ValueError(f"this checkpoint holds no {prefix.rstrip('.')} (not a {method} checkpoint)")
    return state


def restore_module(module: torch.nn.Module, checkpoint: Checkpoint, prefix: str, method: str) -> torch.nn.Module:
    """``module`` loaded with what ``checkpoint`` saved under ``prefix`` (e.g. a decoder), in eval mode."""
    module.load_state_dict(saved_module_state(checkpoint, prefix, method))
    return module.eval()


def pretrain_cached(method: str, tokenizer, texts: list[str], config: PretrainConfig,
                    task: PairTask | None = None, tiny: TinyConfig = TinyConfig(),
                    smoke: bool = False, progress: bool = True) -> Checkpoint:
    """A fresh tiny BERT pretrained with ``task`` (+ MLM if ``config.mlm_weight``), cached by
    method, steps and seed: ``pretrain_cached("mlm", tok, texts, PretrainConfig(mlm_weight=1))``
    is the MLM baseline every notebook shares."""
    def build() -> Checkpoint:
        mlm = new_mlm(tokenizer, tiny, config.seed)
        return Checkpoint(mlm, pretrain(mlm, tokenizer, texts, config, task, tiny=tiny, progress=progress))

    return cached_pretraining(method, build, config.steps, config.seed, tokenizer, tiny, smoke)


# --- the evaluation protocol -------------------------------------------------------------------
def low_label_data(data: RetrievalData, fraction: float, seed: int = 0) -> RetrievalData:
    """A copy of ``data`` whose train split keeps a seeded random ``fraction`` of its queries."""
    if not 0 < fraction <= 1:
        raise ValueError(f"fraction must be in (0, 1], got {fraction}")
    train_qids = data.qids("train")
    keep = set(random.Random(seed).sample(train_qids, max(1, round(fraction * len(train_qids)))))
    splits = {**data.splits, "train": [q for q in train_qids if q in keep]}
    return RetrievalData(data.name, data.corpus, data.queries, data.qrels, data.positives, splits,
                         data.split_pids)


@dataclass
class ProtocolConfig:
    steps: int = 100  # fine-tuning steps, the same for every method
    batch_size: int = 16
    lr: float = 2e-4
    tau: float = 0.05
    low_label_fraction: float = 0.1
    seed: int = 0


@dataclass
class ProtocolResult:
    """Test metrics (and runs, for paired bootstrap) of one pretrained model under the protocol."""
    metrics: dict[str, dict[str, float]] = field(default_factory=dict)  # stage -> measure -> value
    runs: dict[str, dict] = field(default_factory=dict)  # stage -> TREC-style run
    seconds: float = 0.0


def stage_names(config: ProtocolConfig) -> tuple[str, str, str]:
    return "zero-shot", "fine-tuned", f"fine-tuned {config.low_label_fraction:.0%}"


def run_protocol(model: BiEncoder, data: RetrievalData, config: ProtocolConfig = ProtocolConfig(),
                 progress: bool = True) -> ProtocolResult:
    """Zero-shot test retrieval, then fine-tune copies on all / a fraction of the train labels."""
    started, result = time.perf_counter(), ProtocolResult()
    zero, full, low = stage_names(config)
    train_config = TrainConfig(steps=config.steps, batch_size=config.batch_size, lr=config.lr,
                               tau=config.tau, seed=config.seed)
    stages = [(zero, None), (full, data),
              (low, low_label_data(data, config.low_label_fraction, config.seed))]
    for stage, train_data in stages:
        tuned = model
        if train_data is not None:
            tuned = copy.deepcopy(model)
            train(tuned, train_data, train_config, progress=progress)
        result.runs[stage] = dense_run(tuned, data, "test", progress=False)
        result.metrics[stage] = evaluate_run(result.runs[stage], data, "test")
    result.seconds = time.perf_counter() - started
    return result


def protocol_table(results: dict[str, ProtocolResult], measures=("MRR@10", "nDCG@10", "R@20")) -> str:
    """One row per method, one column per (stage, measure)."""
    stages = max((list(r.metrics) for r in results.values()), key=len)  # protocol order
    head = ["method".ljust(22)] + [f"{s[:14]:>14} {m:>7}" for s in stages for m in measures]
    lines = [" | ".join(head)]
    for name, r in results.items():  # "—": a stage this method skipped
        cells = [name.ljust(22)] + [f"{r.metrics[s][m]:>22.3f}" if s in r.metrics else f"{'—':>22}"
                                    for s in stages for m in measures]
        lines.append(" | ".join(cells))
    return "\n".join(lines)


# --- the re-ranking protocol (cross-encoders: PROP, B-PROP) --------------------------------------
def reranker_loss(model: TinyCrossEncoder, data: RetrievalData, batch: Batch,
                  tau: float = 1.0) -> torch.Tensor:
    """``train`` step for a cross-encoder: per query a softmax over [positive, its negatives]."""
    groups = [[p] + n for p, n in zip(batch.positive_pids, batch.negative_pids)]
    if len({len(g) for g in groups}) != 1:
        raise ValueError("every query needs the same number of negatives")
    queries = [q for q, g in zip(batch.queries, groups) for _ in g]
    scores = model(queries, data.passage_texts([p for g in groups for p in g]))  # (B * G,)
    scores = scores.view(len(groups), -1) / tau  # (B, G), the positive in column 0
    return F.cross_entropy(scores, torch.zeros(len(groups), dtype=torch.long, device=scores.device))


def rerank_candidates(model: TinyCrossEncoder, data: RetrievalData, candidates: dict[str, dict[str, float]],
               progress: bool = False) -> dict[str, dict[str, float]]:
    """Re-score every (query, candidate) of a first-stage run with the cross-encoder."""
    pairs = [(q, p) for q, ranked in candidates.items() for p in ranked]
    scores = model.predict(data.query_texts([q for q, _ in pairs]),
                           data.passage_texts([p for _, p in pairs]))
    run: dict[str, dict[str, float]] = {q: {} for q in candidates}
    for (q, p), s in zip(pairs, scores):
        run[q][p] = float(s)
    return run


def run_reranker_protocol(model: TinyCrossEncoder, data: RetrievalData,
                          config: ProtocolConfig = ProtocolConfig(), depth: int = 20,
                          negatives: int = 3, progress: bool = True,
                          pool: CandidatePool | None = None, zero_shot: bool = True) -> ProtocolResult:
    """The protocol for re-rankers: re-rank BM25's top-``depth`` on test zero-shot, then after the
    same short fine-tuning (``negatives`` BM25 negatives per query, listwise) on all / a fraction
    of the train labels. ``config.batch_size`` counts queries (each brings 1 + ``negatives`` pairs);
    ``pool`` (BM25's train pool, built when None) can be shared between calls. ``zero_shot=False``
    skips stage (1) for a model whose scoring head is untrained (its order would be arbitrary)."""
    started, result = time.perf_counter(), ProtocolResult()
    zero, full, low = stage_names(config)
    first_stage = bm25_run(data, "test", k=depth)
    pool = pool or bm25_pool(data, "train", depth=depth)
    sampler = uniform_from_pool(pool, n=negatives, depth=depth)
    train_config = TrainConfig(steps=config.steps, batch_size=config.batch_size, lr=config.lr,
                               tau=1.0, seed=config.seed)
    stages = [(zero, None), (full, data),
              (low, low_label_data(data, config.low_label_fraction, config.seed))]
    for stage, train_data in stages:
        if train_data is None and not zero_shot:
            continue
        tuned = model
        if train_data is not None:
            tuned = copy.deepcopy(model)
            train(tuned, train_data, train_config, sampler, step_fn=reranker_loss, progress=progress)
        result.runs[stage] = rerank_candidates(tuned, data, first_stage)
        result.metrics[stage] = evaluate_run(result.runs[stage], data, "test")
    result.seconds = time.perf_counter() - started
    return result
