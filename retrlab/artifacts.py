"""Shared, cached artifacts: the warm-up retriever, its candidate pool, the STAR model, the cross-encoder.

STAR, ANCE and ADORE (and later RocketQA, AR2, SimANS) all start from a *warm-up* retriever —
in the papers, a model fine-tuned with BM25 negatives (ANCE's ``drivers/run_warmup.py``,
MRR@10 0.311 on MS MARCO). Every notebook calls these functions instead of depending on another
notebook having run: the first call builds the artifact (and prints one line saying so), later
calls load it from ``$RETRLAB_HOME`` in seconds.

* ``warmup_retriever(data, smoke=...)`` — all-MiniLM-L6-v2 briefly fine-tuned with one BM25
  negative per query (``retrlab.train``), saved with ``BiEncoder.save_pretrained``.
* ``warmup_pool(data, depth=200, smoke=...)`` — the warm-up model's top-``depth`` over the train
  split, labelled positives removed (STAR's ``prepare_hardneg.py``): a ``CandidatePool``.
* ``star_retriever(data, smoke=...)`` — the STAR model of notebook 02 (``train_star`` on that pool).
* ``cross_encoder(data, smoke=...)`` — the cross-encoder RocketQA (05) and AR2 (06) share: MiniLM and
  a new head trained on warm-up-pool negatives (``retrlab.rerank.train_cross_encoder``); its folder
  also holds its dev re-ranking report (``cross_encoder_report``).
* ``prepare(data, smoke=...)`` — all of the above and zero-shot MiniLM's corpus vectors, built ahead
  (``retrlab prepare``): a classroom builds them once before the lesson, not inside notebook 05.

* ``cached_pretraining(method, build, steps, seed, tokenizer, model)`` — a pretraining checkpoint
  (``Checkpoint``: the MLM model, its history, extra tensors such as a head or a decoder), one folder
  per method, budget, seed, model and vocabulary: the from-scratch bench's tiny BERTs
  (``retrlab.pretraining.bench``) and the continued-pretraining MiniLMs
  (``retrlab.pretraining.continued``) alike.
* ``cached_result(name, build)`` — a JSON result (a protocol's metrics and runs), so a comparison
  notebook reloads a study instead of re-running it.

Each cache key holds the data's fingerprint, the budget and the seed, so a smoke run (smaller
budget) or another dataset never reads a model built for something else.
"""
from __future__ import annotations

import hashlib
import json
import pickle
import time
import weakref
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
from transformers import BertForMaskedLM

from retrlab.cache import atomic_write_json, cached_dir, home, intact, load_json, seal
from retrlab.constants import BM25_DEPTH
from retrlab.data.dataset import RetrievalData
from retrlab.encoders import BiEncoder, CrossEncoder
from retrlab.pool import CandidatePool, bm25_pool, dense_pool
from retrlab.rerank import CrossEncoderBudget, rerank_report, train_cross_encoder
from retrlab.train import CheckpointError, History, TrainConfig, train


@dataclass(frozen=True)
class Budget:
    """What building a model costs: optimisation steps, batch size, passage tokens, seed."""
    steps: int
    batch_size: int
    max_length: int
    seed: int = 0

    def key(self) -> str:
        return f"st{self.steps}-b{self.batch_size}-L{self.max_length}-s{self.seed}"

    def config(self, lr: float = 2e-5) -> TrainConfig:
        return TrainConfig(steps=self.steps, batch_size=self.batch_size, lr=lr, tau=0.05, seed=self.seed)


# default: ~30 s (warm-up) / ~15 s (STAR) of training on 2 CPU cores; smoke: a few seconds each.
# STAR's budget is also the per-variant budget of notebooks 02 and 03 (kept small: 02 trains four)
WARMUP_BUDGET = {False: Budget(steps=20, batch_size=16, max_length=64), True: Budget(2, 4, 48)}
STAR_BUDGET = {False: Budget(steps=16, batch_size=8, max_length=64), True: Budget(3, 4, 48)}


def fingerprint(data: RetrievalData) -> str:
    """12 hex digits that change when the queries, labels, splits or search corpora change."""
    parts = {"name": data.name, "splits": data.splits, "positives": data.positives,
             "search": {s: data.search_pids(s) for s in data.splits}}
    return hashlib.sha1(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:12]


def warmup_budget(smoke: bool) -> Budget:
    return WARMUP_BUDGET[bool(smoke)]


def star_budget(smoke: bool) -> Budget:
    return STAR_BUDGET[bool(smoke)]


def warmup_retriever(data: RetrievalData, *, smoke: bool, budget: Budget | None = None) -> BiEncoder:
    """MiniLM fine-tuned with in-batch + one BM25 negative per query (built once, then cached)."""
    budget = budget or warmup_budget(smoke)

    def build(folder: Path) -> None:
        print(f"building the warm-up retriever (MiniLM + BM25 negatives, {budget.steps} steps × "
              f"batch {budget.batch_size}); cached for later calls (`retrlab prepare` builds it ahead)")
        from retrlab.negatives.uniform import uniform_from_pool

        model = BiEncoder.minilm(passage_max_length=budget.max_length)
        pool = bm25_pool(data, "train", depth=BM25_DEPTH)
        train(model, data, budget.config(), sampler=uniform_from_pool(pool, n=1), progress=False)
        model.save_pretrained(folder)

    folder = cached_dir(f"models/warmup-{fingerprint(data)}-{budget.key()}", build)
    return BiEncoder.from_pretrained(folder)


def save_pool(pool: CandidatePool, path: str | Path) -> Path:
    """Write a ``CandidatePool`` as one JSON file (atomic); ``load_pool`` reads it back exactly."""
    return atomic_write_json(path, {
        "source": pool.source, "qids": pool.qids, "pids": pool.pids,
        "scores": [s.astype(np.float32).tolist() for s in pool.scores],
        "hidden": [h.astype(bool).tolist() for h in pool.hidden],
        "positive_scores": pool.positive_scores.astype(np.float32).tolist(),
        "positive_ranks": pool.positive_ranks.astype(int).tolist()})


def load_pool(path: str | Path) -> CandidatePool:
    raw = load_json(path)
    return CandidatePool(raw["source"], raw["qids"], raw["pids"],
                         [np.asarray(s, dtype=np.float32) for s in raw["scores"]],
                         [np.asarray(h, dtype=bool) for h in raw["hidden"]],
                         np.asarray(raw["positive_scores"], dtype=np.float32),
                         np.asarray(raw["positive_ranks"], dtype=np.int64))


def warmup_pool(data: RetrievalData, depth: int = 200, *, smoke: bool,
                budget: Budget | None = None) -> CandidatePool:
    """The warm-up model's top-``depth`` train candidates (labelled positives removed), cached.

    ``budget`` is the warm-up retriever's (default: ``warmup_budget(smoke)``).
    """
    budget = budget or warmup_budget(smoke)
    path = home() / "pools" / f"warmup-{fingerprint(data)}-{budget.key()}-d{depth}.json"
    if intact(path):
        return load_pool(path)
    model = warmup_retriever(data, smoke=smoke, budget=budget)
    print(f"mining the warm-up pool: top-{depth} of {len(data.search_pids('train'))} train passages "
          f"for {len(data.qids('train'))} queries; cached for later calls (`retrlab prepare` builds it ahead)")
    pool = dense_pool(model, data, "train", depth=depth, source="warm-up")
    seal(save_pool(pool, path))
    return pool


def star_retriever(data: RetrievalData, *, smoke: bool, budget: Budget | None = None,
                   warmup: Budget | None = None) -> BiEncoder:
    """The STAR model of notebook 02: the warm-up model trained with ``train_star`` (cached).

    ``budget`` (STAR's) and ``warmup`` (the warm-up retriever's) default to the smoke/default ones.
    """
    from retrlab.methods.star import train_star

    budget = budget or star_budget(smoke)
    warmup = warmup or warmup_budget(smoke)

    def build(folder: Path) -> None:
        model = warmup_retriever(data, smoke=smoke, budget=warmup)
        pool = warmup_pool(data, smoke=smoke, budget=warmup)
        print(f"building the STAR retriever (warm-up model + static hard and random negatives, "
              f"{budget.steps} steps × batch {budget.batch_size}); cached for later calls "
              "(`retrlab prepare` builds it ahead)")
        train_star(model, data, pool, budget.config(), progress=False)
        model.save_pretrained(folder)

    key = f"{fingerprint(data)}-{warmup.key()}-{budget.key()}"
    return BiEncoder.from_pretrained(cached_dir(f"models/star-{key}", build))


def budgets_as_dict(smoke: bool) -> dict:
    """The budgets in force, for a notebook to print."""
    return {"warm-up": asdict(warmup_budget(smoke)), "STAR": asdict(star_budget(smoke))}


# default: ~90 s of training + ~10 s of evaluation on 2 free CPU cores (measured on wiki-car dev, zero-shot
# MiniLM's top-10: 40 steps at lr 5e-5 re-rank 0.571 -> 0.549, at 1e-4 -> 0.579, 60 steps at 1e-4 -> 0.621);
# smoke: a few seconds
CE_BUDGET = {False: CrossEncoderBudget(steps=60, batch_size=6, negatives=3, max_length=64, lr=1e-4),
             True: CrossEncoderBudget(steps=3, batch_size=4, negatives=1, max_length=64,
                                      eval_queries=10, eval_depth=5)}


def cross_encoder_budget(smoke: bool) -> CrossEncoderBudget:
    return CE_BUDGET[bool(smoke)]


def cross_encoder_folder(data: RetrievalData, *, smoke: bool, budget: CrossEncoderBudget | None = None,
                         progress: bool = False, warmup=None) -> Path:
    """The cached folder of the shared cross-encoder (built on first call): model + ``report.json``.

    ``warmup`` (an ``artifacts.Budget``) picks the warm-up retriever whose pool supplies the
    negatives; by default the one of ``artifacts.warmup_budget(smoke)``.
    """
    budget = budget or cross_encoder_budget(smoke)

    def build(folder: Path) -> None:
        if warmup is None:
            pool = warmup_pool(data, smoke=smoke)
        else:
            pool = warmup_pool(data, smoke=smoke, budget=warmup)
        print(f"building the cross-encoder (MiniLM + {budget.head} head, {budget.steps} steps × "
              f"{budget.batch_size} queries × {1 + budget.negatives} pairs); cached for later calls "
              "(`retrlab prepare` builds it ahead)")
        started = time.perf_counter()
        model = CrossEncoder.minilm(max_length=budget.max_length, head=budget.head)
        history = train_cross_encoder(model, data, pool, budget, progress)
        split = "dev" if "dev" in data.splits else "test"  # a dataset without a dev split reports on test
        report = rerank_report(model, data, split, budget.eval_queries, budget.eval_depth)
        report.update(budget=asdict(budget), train_seconds=history.last("seconds"),
                      build_seconds=time.perf_counter() - started, final_loss=history.last("loss"))
        model.save_pretrained(folder)
        atomic_write_json(folder / "report.json", report)

    key = f"{fingerprint(data)}-{(warmup or warmup_budget(smoke)).key()}-{budget.key()}"
    return cached_dir(f"models/cross-encoder-{key}", build)


def cross_encoder(data: RetrievalData, *, smoke: bool, budget: CrossEncoderBudget | None = None,
                  progress: bool = False, warmup=None) -> CrossEncoder:
    """The shared cross-encoder: MiniLM + a new head trained on warm-up-pool negatives (cached)."""
    folder = cross_encoder_folder(data, smoke=smoke, budget=budget, progress=progress, warmup=warmup)
    return CrossEncoder.from_pretrained(folder)


def cross_encoder_report(data: RetrievalData, *, smoke: bool,
                         budget: CrossEncoderBudget | None = None, warmup=None) -> dict:
    """The dev re-ranking report written when the cached cross-encoder was built."""
    return load_json(cross_encoder_folder(data, smoke=smoke, budget=budget, warmup=warmup) / "report.json")


# --- everything the negatives notebooks share, built ahead ----------------------------------------
def zero_shot_vectors(data: RetrievalData, split: str, max_length: int):
    """Zero-shot MiniLM's vectors of ``split``'s search corpus at ``max_length`` tokens, cached under the
    key notebooks 00, 01, 05, 07 and 15 read (``evaluation.cached_corpus_embeddings``)."""
    from retrlab.evaluation import cached_corpus_embeddings

    model = BiEncoder.minilm(passage_max_length=max_length)
    return cached_corpus_embeddings(model, "minilm", data, data.search_pids(split))


def prepare(data: RetrievalData, *, smoke: bool, progress: bool = True) -> dict[str, float]:
    """Build (or find cached) every artifact the negatives notebooks share; seconds per artifact.

    Cold, notebooks 05 and 06 spend about three of their minutes building the warm-up retriever, its
    pool and the cross-encoder before their own lesson starts (docs/TIMINGS.md). Building them ahead,
    once per cache folder (``retrlab prepare``, about four minutes on 2 cores), leaves each notebook
    its own work only. The artifacts are the very ones the notebooks would build: same functions, keys.
    """
    from tqdm.auto import tqdm

    length, quickstart = (48, 64) if smoke else (64, 128)  # passage tokens: notebooks 01-07, and 00
    steps = {
        "zero-shot MiniLM vectors (train, test)": lambda: [zero_shot_vectors(data, split, length)
                                                           for split in ("train", "test") if data.qids(split)],
        "zero-shot MiniLM vectors (test, quickstart)": lambda: zero_shot_vectors(data, "test", quickstart),
        "warm-up retriever and its pool": lambda: warmup_pool(data, smoke=smoke),
        "STAR retriever": lambda: star_retriever(data, smoke=smoke),
        "cross-encoder": lambda: cross_encoder_folder(data, smoke=smoke),
    }
    seconds = {}
    for name, build in tqdm(steps.items(), desc="prepare", disable=not progress):
        started = time.perf_counter()
        build()
        seconds[name] = time.perf_counter() - started
    return seconds


# --- pretraining checkpoints and study results ----------------------------------------------------
PRETRAINING_VERSION = "v1"  # bump when a pretraining objective changes, so old checkpoints are not reused


class ModelKey(Protocol):
    """What names a pretraining model in a cache key (``TinyConfig``, ``ContinuedBudget``)."""
    def key(self) -> str: ...


@dataclass
class Checkpoint:
    """A pretrained model: the MLM object (``.bert`` = encoder), its history, extra tensors
    (e.g. PROP's re-ranking head as ``{"head.weight": ..., "head.bias": ...}``)."""
    mlm: BertForMaskedLM
    history: History
    state: dict[str, torch.Tensor] = field(default_factory=dict)


_VOCABULARY_KEYS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def vocabulary_key(tokenizer) -> str:
    """8 hex digits naming a tokenizer's vocabulary; computed once per tokenizer object (hashing
    MiniLM's 30k entries takes about 40 ms, and a study names dozens of checkpoints)."""
    if tokenizer not in _VOCABULARY_KEYS:
        vocab = json.dumps(sorted(tokenizer.get_vocab().items()))
        _VOCABULARY_KEYS[tokenizer] = hashlib.sha1(vocab.encode()).hexdigest()[:8]
    return _VOCABULARY_KEYS[tokenizer]


def checkpoint_name(method: str, steps: int, seed: int, tokenizer, model: ModelKey, smoke: bool = False) -> str:
    """Cache key: method, budget, seed, model config and vocabulary (smoke runs apart)."""
    vocab = vocabulary_key(tokenizer)
    return (f"pretraining/{PRETRAINING_VERSION}-{method}-steps{steps}-seed{seed}-{model.key()}-{vocab}"
            + ("-smoke" if smoke else ""))


def cached_pretraining(method: str, build: Callable[[], Checkpoint], steps: int, seed: int,
                       tokenizer, model: ModelKey, smoke: bool = False,
                       attention: str = "eager") -> Checkpoint:
    """Load the checkpoint of ``method`` at ``steps`` and ``seed``, or ``build()`` and save it first.

    The folder (under ``$RETRLAB_HOME/pretraining/``, written atomically, manifest checked on every
    load: a damaged one is rebuilt) holds ``mlm/`` (HF format), ``tokenizer/``, ``history.json`` and
    ``state.pt``. ``build`` must honour the key: train ``steps`` steps with ``seed`` (the cache cannot
    check what it was given). ``attention``: the loaded model's attention implementation ("eager":
    B-PROP reads attention maps; "sdpa" is faster).
    """
    def write(tmp: Path) -> None:
        checkpoint = build()
        checkpoint.mlm.save_pretrained(tmp / "mlm")
        tokenizer.save_pretrained(tmp / "tokenizer")
        atomic_write_json(tmp / "history.json", checkpoint.history.rows)
        torch.save(checkpoint.state, tmp / "state.pt")

    folder = cached_dir(checkpoint_name(method, steps, seed, tokenizer, model, smoke), write)
    mlm = BertForMaskedLM.from_pretrained(folder / "mlm", attn_implementation=attention)
    mlm.eval()
    return Checkpoint(mlm, History(load_json(folder / "history.json")), load_tensors(folder / "state.pt"))


def load_tensors(path: Path) -> dict[str, torch.Tensor]:
    """A ``state.pt`` of tensors, loaded weights-only: a file holding a pickled object is refused, unrun."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        raise CheckpointError(f"{path} holds more than tensors, so it was not loaded (delete its folder to "
                              f"rebuild the checkpoint): {str(error).splitlines()[0]}") from None


def cached_result(name: str, build: Callable[[], Any]) -> Any:
    """The JSON value ``build()`` returns, computed once and cached as ``results/<name>/result.json``
    (manifest-checked like every entry: a damaged one is recomputed)."""
    folder = cached_dir(f"results/{name}", lambda tmp: atomic_write_json(tmp / "result.json", build()))
    return load_json(folder / "result.json")
