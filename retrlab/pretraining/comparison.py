"""The pretraining comparison: every method, two protocols, several seeds, one cached study.

* **from scratch** — the bench's 2-layer BERT (``bench.py``) pretrained from random weights with
  each objective at one step budget; baselines: random initialisation and MLM.
* **continued** — all-MiniLM-L6-v2 continued with each objective on wiki-car's text
  (``continued.py``); baselines: the checkpoint as is and continued MLM.

Each row is a pretrained encoder and a *readout* (mean pooling or the last layer's [CLS]: the vector
its paper trains); the baselines are read both ways, so each method is judged against a baseline
read the same way. Every row goes through ``two_stage_protocol`` (zero-shot test retrieval, then
the same short fine-tuning on all train labels and test again; the bench's low-label stage is left
out at this budget). A row's result (metrics and per-query runs) is a cached artifact
(``retrlab.artifacts.cached_result``), so notebook 13 reloads a study that ``retrlab
pretraining-study`` built. ``effects`` gives the papers' comparisons (ICT vs MLM, Condenser vs MLM,
coCondenser vs Condenser, ...): a paired bootstrap over test queries on the seed-averaged per-query
RR@10, the gap in each seed and their spread, and notebook 14's verdict words (robust: the interval
excludes 0 and the gap exceeds its seed spread). The spread is that of the *paired* per-seed gap:
both rows of a seed share its fine-tuning batches.
"""
from __future__ import annotations

import hashlib
import json
import multiprocessing
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict, dataclass, field

import numpy as np
import torch
from tqdm.auto import tqdm

from retrlab.artifacts import Checkpoint, cached_result, fingerprint
from retrlab.cache import home, intact
from retrlab.data.dataset import RetrievalData
from retrlab.encoders import BiEncoder
from retrlab.evaluation import dense_run, evaluate_run, split_qrels
from retrlab.pretraining import continued as cont
from retrlab.pretraining import retromae
from retrlab.pretraining import seed as seed_encoder
from retrlab.pretraining.bench import (PretrainConfig, ProtocolConfig, ProtocolResult, TinyConfig, as_biencoder,
                                       bench_tokenizer, corpus_texts, new_mlm, pretrain_cached, stage_names)
from retrlab.pretraining.condenser import CONDENSER_TINY, CondenserConfig, cached_cocondenser
from retrlab.pretraining.contriever import cached_contriever
from retrlab.pretraining.hyperlinks import mixed_task
from retrlab.pretraining.ict import ict_task
from retrlab.stats import paired_bootstrap, per_query
from retrlab.train import TrainConfig, train

PROTOCOLS = ("scratch", "continued")
MEAN, CLS = TinyConfig(), CONDENSER_TINY  # the bench BERT read by mean pooling / by its last-layer [CLS]
CONDENSER = CondenserConfig(skip_from=1, head_layers=2, span_length=32, chunk_size=16)  # notebook 10's
RETROMAE_WEAK, RETROMAE_STRONG = retromae.RetroMAEConfig(decoder_mask=0.5), retromae.RetroMAEConfig(decoder_mask=0.15)

# row -> (checkpoint method, readout); method None = the start itself (random init / MiniLM as is)
SCRATCH_ROWS = {
    "random init (mean)": (None, "mean"), "random init (CLS)": (None, "cls"),
    "MLM (mean)": ("MLM", "mean"), "MLM (CLS)": ("MLM", "cls"),
    "ICT": ("ICT", "mean"), "ICT+BFS+WLP": ("ICT+BFS+WLP", "mean"),
    "Condenser": ("Condenser", "cls"), "coCondenser": ("coCondenser", "cls"),
    "Contriever": ("Contriever", "mean"), "Contriever MoCo": ("Contriever MoCo", "mean"),
    "SEED-Encoder": ("SEED-Encoder", "cls"),
    "RetroMAE": ("RetroMAE", "cls"), "RetroMAE (strong decoder)": ("RetroMAE (strong decoder)", "cls"),
}
CONTINUED_ROWS = {
    "as is (mean)": (None, "mean"), "as is (CLS)": (None, "cls"),
    "MLM (mean)": ("MLM", "mean"), "MLM (CLS)": ("MLM", "cls"),
    "ICT": ("ICT", "mean"), "ICT+BFS+WLP": ("ICT+BFS+WLP", "mean"),
    "Condenser": ("Condenser", "cls"), "coCondenser": ("coCondenser", "cls"),
    "Contriever": ("Contriever", "mean"),
    "RetroMAE": ("RetroMAE", "cls"), "RetroMAE (strong decoder)": ("RetroMAE (strong decoder)", "cls"),
}
# the papers' claims: (label, row a, row b, what the paper reports)
EFFECTS = (
    ("ICT vs MLM", "ICT", "MLM (mean)", "ICT > MLM (Lee et al. 2019; Chang et al. 2020)"),
    ("ICT+BFS+WLP vs MLM", "ICT+BFS+WLP", "MLM (mean)", "ICT+BFS+WLP > MLM (Chang et al. 2020)"),
    ("Condenser vs MLM", "Condenser", "MLM (CLS)", "Condenser > BERT/MLM (Gao & Callan 2021)"),
    ("coCondenser vs Condenser", "coCondenser", "Condenser", "coCondenser > Condenser (Gao & Callan 2022)"),
    ("Contriever vs ICT", "Contriever", "ICT", "cropping > ICT (Izacard et al. 2022)"),
    ("RetroMAE vs MLM", "RetroMAE", "MLM (CLS)", "RetroMAE > BERT/MLM (Xiao et al. 2022)"),
    ("weak vs strong decoder", "RetroMAE", "RetroMAE (strong decoder)",
     "a weak decoder (50% masked rows) > a strong one (15%) (Xiao et al. 2022; Lu et al. 2021)"),
)


@dataclass(frozen=True)
class StudyBudget:
    """One protocol's budget: pretraining steps, fine-tuning steps/batch/lr, test queries (0: all)."""
    pretrain_steps: int
    finetune_steps: int
    finetune_batch: int
    finetune_lr: float
    test_queries: int = 0
    continued: cont.ContinuedBudget | None = None  # the continued protocol's pretraining budget

    def key(self) -> str:
        return hashlib.sha1(json.dumps(asdict(self), sort_keys=True).encode()).hexdigest()[:10]

    def protocol(self, seed: int) -> ProtocolConfig:
        return ProtocolConfig(steps=self.finetune_steps, batch_size=self.finetune_batch, lr=self.finetune_lr,
                              seed=seed)


def study_budget(protocol: str, smoke: bool) -> StudyBudget:
    """The budgets in force. From scratch: notebook 13's (24 pretraining steps of 32 passages, 16 for
    SEED/RetroMAE; 20 fine-tuning steps of 16 at lr 2e-4; all test queries). Continued: 12 steps of 8
    passages at lr 1e-4 (a MiniLM step costs far more than a bench step), 6 fine-tuning steps of 8 at lr 5e-5, on
    the first 100 test queries (their 268 passages: encoding them is most of a row's cost). Smoke: two
    steps of everything on 40 test queries (continued: one fine-tuning step, 10 test queries,
    MiniLM's first layer only, passages at 32 tokens)."""
    if protocol == "scratch":
        return StudyBudget(2, 2, 8, 2e-4, test_queries=40) if smoke else StudyBudget(24, 20, 16, 2e-4)
    if protocol == "continued":
        if smoke:
            return StudyBudget(2, 1, 4, 5e-5, test_queries=10,
                               continued=cont.ContinuedBudget(steps=2, batch_size=4, layers=1, query_max_length=16,
                                                              passage_max_length=32))
        return StudyBudget(12, 6, 8, 5e-5, test_queries=100, continued=cont.ContinuedBudget(steps=12, batch_size=8))
    raise ValueError(f"protocol must be one of {PROTOCOLS}, got {protocol!r}")


def study_data(data: RetrievalData, budget: StudyBudget) -> RetrievalData:
    """``data`` with its test split cut to ``budget.test_queries`` (their articles' passages)."""
    return data.subset({"test": budget.test_queries}) if budget.test_queries else data


# --- the two-stage protocol -----------------------------------------------------------------------
def two_stage_protocol(model: BiEncoder, data: RetrievalData, config: ProtocolConfig) -> ProtocolResult:
    """``run_protocol``'s stages (1) and (2): zero-shot, then fine-tuned on all labels. ``model`` is
    fine-tuned in place (no copy: a MiniLM copy per row cost more than its smoke-mode training)."""
    started, result = time.perf_counter(), ProtocolResult()
    zero, full, _ = stage_names(config)

    def test(stage: str) -> None:
        result.runs[stage] = dense_run(model, data, "test", progress=False)
        result.metrics[stage] = evaluate_run(result.runs[stage], data, "test")

    test(zero)
    train(model, data, TrainConfig(steps=config.steps, batch_size=config.batch_size, lr=config.lr, tau=config.tau,
                                   seed=config.seed), progress=False)
    test(full)
    result.seconds = time.perf_counter() - started
    return result


def result_to_json(result: ProtocolResult) -> dict:
    return {"metrics": result.metrics, "runs": result.runs, "seconds": result.seconds}


def result_from_json(raw: dict) -> ProtocolResult:
    return ProtocolResult(raw["metrics"], raw["runs"], raw["seconds"])


# --- checkpoints of each protocol -----------------------------------------------------------------
def scratch_checkpoint(method: str, data: RetrievalData, steps: int, seed: int, smoke: bool,
                       progress: bool = False) -> Checkpoint:
    """Notebook 13's from-scratch checkpoint of ``method`` (each builder with its notebook's settings)."""
    texts = corpus_texts(data)
    tok = bench_tokenizer(data, MEAN.vocab_size)
    half = steps // 2
    builders: dict[str, Callable[[], Checkpoint]] = {
        "MLM": lambda: pretrain_cached("mlm", tok, texts, PretrainConfig(steps=steps, mlm_weight=1.0, seed=seed),
                                       tiny=MEAN, smoke=smoke, progress=progress),
        "ICT": lambda: pretrain_cached("ict", tok, texts, PretrainConfig(steps=steps, seed=seed),
                                       task=ict_task(data), tiny=MEAN, smoke=smoke, progress=progress),
        "ICT+BFS+WLP": lambda: pretrain_cached("ict-bfs-wlp", tok, texts, PretrainConfig(steps=steps, seed=seed),
                                               task=mixed_task(data), tiny=MEAN, smoke=smoke, progress=progress),
        "Condenser": lambda: cached_cocondenser(tok, texts, steps - half, half, seed, smoke,
                                                CondenserConfig(**{**asdict(CONDENSER), "co_weight": 0.0}),
                                                progress=progress),
        "coCondenser": lambda: cached_cocondenser(tok, texts, steps - half, half, seed, smoke, CONDENSER,
                                                  progress=progress),
        "Contriever": lambda: cached_contriever(tok, texts, steps, seed, smoke, mode="inbatch", progress=progress),
        "Contriever MoCo": lambda: cached_contriever(tok, texts, steps, seed, smoke, mode="moco", progress=progress),
        "SEED-Encoder": lambda: seed_encoder.cached_seed(tok, texts, steps, seed, smoke,
                                                         config=seed_encoder.SeedConfig(window=2), progress=progress),
        "RetroMAE": lambda: retromae.cached_retromae(tok, texts, steps, seed, smoke, config=RETROMAE_WEAK,
                                                     progress=progress),
        "RetroMAE (strong decoder)": lambda: retromae.cached_retromae(tok, texts, steps, seed, smoke,
                                                                      config=RETROMAE_STRONG, progress=progress),
    }
    if method not in builders:
        raise ValueError(f"unknown from-scratch method {method!r}; one of {list(builders)}")
    return builders[method]()


def continued_checkpoint(method: str, data: RetrievalData, budget: cont.ContinuedBudget, seed: int, smoke: bool,
                         progress: bool = False) -> Checkpoint:
    """The continued checkpoint of ``method``; "RetroMAE (strong decoder)" decodes from 15%-masked rows."""
    if method == "RetroMAE (strong decoder)":
        return cont.continued_checkpoint("RetroMAE", data, budget, seed, smoke, progress, RETROMAE_STRONG)
    return cont.continued_checkpoint(method, data, budget, seed, smoke, progress)


def row_reader(protocol: str, row: str, data: RetrievalData, budget: StudyBudget, seed: int, smoke: bool,
               progress: bool = False) -> BiEncoder:
    """The bi-encoder of one row: its checkpoint's encoder read by the row's pooling (cosine scores)."""
    rows = SCRATCH_ROWS if protocol == "scratch" else CONTINUED_ROWS
    method, pooling = rows[row]
    if protocol == "scratch":
        tok, tiny = bench_tokenizer(data, MEAN.vocab_size), (MEAN if pooling == "mean" else CLS)
        encoder = (new_mlm(tok, MEAN, seed) if method is None
                   else scratch_checkpoint(method, data, budget.pretrain_steps, seed, smoke, progress).mlm).bert
        return as_biencoder(encoder, tok, tiny)
    start = (cont.minilm_mlm(budget.continued.layers, seed).eval() if method is None
             else continued_checkpoint(method, data, budget.continued, seed, smoke, progress).mlm)
    return as_biencoder(start.bert, cont.minilm_tokenizer(), budget.continued.reader(pooling))


# --- the study ------------------------------------------------------------------------------------
@dataclass
class Study:
    protocol: str
    budget: StudyBudget
    data: RetrievalData  # the data the rows were tested on (test split cut to the budget)
    results: dict[int, dict[str, ProtocolResult]] = field(default_factory=dict)  # seed -> row -> result
    seconds: dict[int, dict[str, float]] = field(default_factory=dict)  # seed -> row -> this call's seconds

    @property
    def rows(self) -> list[str]:
        return list(SCRATCH_ROWS if self.protocol == "scratch" else CONTINUED_ROWS)

    @property
    def stages(self) -> list[str]:
        return list(next(iter(next(iter(self.results.values())).values())).metrics)


def row_entry(protocol: str, data: RetrievalData, budget: StudyBudget, smoke: bool, row: str, seed: int) -> str:
    """The cache name of one row's result (``cached_result``'s name)."""
    key = f"pretraining-study/{protocol}-{fingerprint(data)}-{budget.key()}" + ("-smoke" if smoke else "")
    slug = row.replace(" ", "_").replace("(", "").replace(")", "").replace("+", "-")
    return f"{key}/{slug}-seed{seed}"


def run_study(protocol: str, data: RetrievalData, seeds: tuple[int, ...] = (0,), *, smoke: bool = False,
              budget: StudyBudget | None = None, rows: list[str] | None = None,
              progress: Callable | None = None) -> Study:
    """Every row of ``protocol`` for every seed: loaded from the cache, or pretrained, fine-tuned and
    tested once and cached. ``progress(done, total, row, seed)`` is called after each row."""
    budget = budget or study_budget(protocol, smoke)
    tested = study_data(data, budget)
    study = Study(protocol, budget, tested)
    rows = rows or study.rows
    for i, seed in enumerate(seeds):
        study.results[seed], study.seconds[seed] = {}, {}
        for j, row in enumerate(rows):
            started = time.perf_counter()
            raw = cached_result(row_entry(protocol, data, budget, smoke, row, seed), lambda: result_to_json(
                two_stage_protocol(row_reader(protocol, row, data, budget, seed, smoke), tested,
                                   budget.protocol(seed))))
            study.results[seed][row] = result_from_json(raw)
            study.seconds[seed][row] = time.perf_counter() - started
            if progress is not None:
                progress(i * len(rows) + j + 1, len(seeds) * len(rows), row, seed)
    return study


# --- building studies in parallel -----------------------------------------------------------------
def checkpoint_groups(protocol: str, rows: list[str]) -> list[list[str]]:
    """``rows`` grouped by the checkpoint they read: MLM's two readouts share one checkpoint, Condenser
    and coCondenser share their first stage, the start rows (random init / as is) need none. A group
    is one job of ``run_studies``, so no checkpoint is ever built by two processes at once."""
    table = SCRATCH_ROWS if protocol == "scratch" else CONTINUED_ROWS
    groups: dict[str, list[str]] = {}
    for row in rows:
        method = table[row][0] or row
        groups.setdefault("Condenser" if method == "coCondenser" else method, []).append(row)
    return list(groups.values())


_worker_data: RetrievalData | None = None  # a build process's copy of the data, sent once when it starts


def _start_worker(data: RetrievalData) -> None:
    global _worker_data
    torch.set_num_threads(1)  # one process per core: two single-threaded builds beat one two-threaded build
    _worker_data = data


def _build_group(protocol: str, seed: int, rows: list[str], smoke: bool, budget: StudyBudget) -> dict[str, float]:
    """In a build process: one group of rows for one seed, cached; returns each row's seconds."""
    study = run_study(protocol, _worker_data, (seed,), smoke=smoke, budget=budget, rows=rows)
    return study.seconds[seed]


def run_studies(data: RetrievalData, seeds: tuple[int, ...] = (0,), *, protocols: tuple[str, ...] = PROTOCOLS,
                smoke: bool = False, workers: int = 2, budgets: dict[str, StudyBudget] | None = None,
                rows: dict[str, list[str]] | None = None, progress: bool = True) -> dict[str, Study]:
    """``run_study`` for each protocol, with the rows not cached yet built first by ``workers`` processes
    (one thread each; jobs are ``checkpoint_groups`` of one seed, the continued protocol's first since
    they take longest). ``budgets``, ``rows``: a protocol's budget other than ``study_budget``'s, its
    rows other than all of them. A study's
    ``seconds`` are the building processes' own times. Same numbers as ``run_study`` alone: every row is
    seeded by its own seed, whichever process builds it."""
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    budgets = {protocol: (budgets or {}).get(protocol) or study_budget(protocol, smoke) for protocol in protocols}
    rows = {protocol: (rows or {}).get(protocol) or list(SCRATCH_ROWS if protocol == "scratch" else CONTINUED_ROWS)
            for protocol in protocols}
    jobs = [(protocol, seed, group, smoke, budgets[protocol])
            for protocol in sorted(protocols, key=lambda p: p != "continued") for seed in seeds
            for group in checkpoint_groups(protocol, rows[protocol])
            if not all(intact(home() / "results" / row_entry(protocol, data, budgets[protocol], smoke, row, seed))
                       for row in group)]
    built: dict[tuple[str, int], dict[str, float]] = {}
    bar = tqdm(total=len(jobs), desc=f"building {len(jobs)} row groups", unit="group", disable=not progress or not jobs)
    if workers > 1 and len(jobs) > 1:
        if "scratch" in protocols:
            bench_tokenizer(data, MEAN.vocab_size)  # shared by every scratch row: built once, here
        context = multiprocessing.get_context("spawn")  # a fresh interpreter: safe beside torch's threads
        with ProcessPoolExecutor(min(workers, len(jobs)), mp_context=context, initializer=_start_worker,
                                 initargs=(data,)) as pool:
            futures = {pool.submit(_build_group, *job): job for job in jobs}
            try:
                for future in as_completed(futures):
                    built.setdefault(futures[future][:2], {}).update(future.result())
                    bar.update(1)
            except BaseException:  # a failed job (or Ctrl-C) stops the jobs not started yet
                pool.shutdown(cancel_futures=True)
                raise
    else:
        for protocol, seed, group, _, budget in jobs:
            built.setdefault((protocol, seed), {}).update(
                run_study(protocol, data, (seed,), smoke=smoke, budget=budget, rows=group).seconds[seed])
            bar.update(1)
    bar.close()
    studies = {protocol: run_study(protocol, data, seeds, smoke=smoke, budget=budgets[protocol], rows=rows[protocol])
               for protocol in protocols}
    for (protocol, seed), seconds in built.items():
        studies[protocol].seconds[seed].update(seconds)
    return studies


def mean_metric(study: Study, row: str, stage: str, measure: str = "MRR@10") -> list[float]:
    """The row's ``measure`` at ``stage``, one value per seed."""
    return [study.results[s][row].metrics[stage][measure] for s in study.results]


@dataclass
class Effect:
    """Row ``a`` minus row ``b`` at ``stage`` (the paper's direction: a above b): the gap and 95% interval
    of a paired bootstrap over test queries on the seed-averaged RR@10, and the gap in each seed."""
    label: str
    a: str
    b: str
    claim: str  # what the paper reports ("" for a gap that is no paper's claim)
    stage: str
    gap: float
    low: float
    high: float
    per_seed: list[float]

    @property
    def spread(self) -> float:
        """Standard deviation of the per-seed gaps: both rows of a seed share its fine-tuning batches,
        so the gap is paired over seeds as it is over queries (0 for one seed)."""
        return float(np.std(self.per_seed, ddof=1)) if len(self.per_seed) > 1 else 0.0

    @property
    def robust(self) -> bool:
        """The interval excludes 0 and the gap is larger than its seed spread (notebook 14's rule)."""
        return (self.low > 0 or self.high < 0) and abs(self.gap) > self.spread

    @property
    def verdict(self) -> str:
        return "not reproduced" if not self.robust else ("reproduced" if self.gap > 0 else "opposite")

    @property
    def reproduced(self) -> bool:
        return self.verdict == "reproduced"


def seed_averaged(study: Study, row: str, stage: str, qrels: dict) -> dict[str, float]:
    """Per-query RR@10 of ``row`` at ``stage``, averaged over the study's seeds."""
    values = [per_query(study.results[s][row].runs[stage], qrels, "MRR@10") for s in study.results]
    return {q: float(np.mean([v[q] for v in values])) for q in values[0]}


def gap(study: Study, a: str, b: str, stage: str, label: str = "", claim: str = "") -> Effect:
    """Row ``a`` minus row ``b`` at ``stage``, over the study's seeds."""
    qrels = split_qrels(study.data, "test")
    c = paired_bootstrap(seed_averaged(study, a, stage, qrels), seed_averaged(study, b, stage, qrels),
                         a=a, b=b, measure="MRR@10")
    gaps = np.subtract(mean_metric(study, a, stage), mean_metric(study, b, stage))
    return Effect(label or f"{a} vs {b}", a, b, claim, stage, c.difference, c.low, c.high, [float(g) for g in gaps])


def effects(study: Study, stage: str) -> list[Effect]:
    """The papers' comparisons (``EFFECTS``) at ``stage``, for the rows this study has."""
    have = set(next(iter(study.results.values())))
    return [gap(study, a, b, stage, label, claim) for label, a, b, claim in EFFECTS if {a, b} <= have]


def study_table(study: Study, measure: str = "MRR@10") -> str:
    """One line per row: ``measure`` per stage as mean ± std over seeds."""
    from retrlab.stats import mean_std

    stages = study.stages
    lines = [f"{'row':<27}" + "".join(f"{s:>22}" for s in stages)]
    for row in next(iter(study.results.values())):
        lines.append(f"{row:<27}" + "".join(f"{mean_std(mean_metric(study, row, s, measure)):>22}" for s in stages))
    return "\n".join(lines)


# --- measured reasons: what each head, loss and decoder did -----------------------------------------
@dataclass
class Diagnostics:
    """Why a method helps or not, measured on seeded passages (nats/token unless said otherwise)."""
    condenser_cls_use: float  # head MLM loss with another passage's CLS minus with its own
    span_loss: float  # coCondenser's span contrastive loss over its last logged steps
    span_floor: float  # log(2n - 1): the loss of a uniform guess among the other 2n - 1 spans
    decoder_cls_use: dict[str, float]  # RetroMAE decoder loss with shuffled CLS minus own, per decoder
    mean_cosine: dict[str, float]  # mean cosine between distinct passages, per mean-pooled row


def _passages(data: RetrievalData, n: int) -> list[str]:
    texts = corpus_texts(data)
    return [texts[i] for i in np.random.default_rng(0).choice(len(texts), size=min(n, len(texts)), replace=False)]


def mean_cosine(model: BiEncoder, texts: list[str]) -> float:
    """Mean cosine between the vectors of distinct ``texts`` (1.0: every text gets one vector)."""
    vectors = model.encode_passages(texts, progress=False)  # (n, H), L2-normalised
    sims = vectors @ vectors.T
    n = len(texts)
    return float((sims.sum() - np.trace(sims)) / (n * (n - 1)))


def diagnostics(study: Study, data: RetrievalData, seed: int = 0, smoke: bool = False,
                probe: int = 16) -> Diagnostics:
    """The measured reasons of notebook 13 for one protocol and seed, on ``probe`` seeded passages."""
    import torch

    from retrlab.pretraining.condenser import cls_swap_cost, head_from, masked_batch

    scratch, budget, texts = study.protocol == "scratch", study.budget, _passages(data, probe)
    get = ((lambda m: scratch_checkpoint(m, data, budget.pretrain_steps, seed, smoke)) if scratch
           else (lambda m: continued_checkpoint(m, data, budget.continued, seed, smoke)))
    tok = bench_tokenizer(data, MEAN.vocab_size) if scratch else cont.minilm_tokenizer()
    max_length = (MEAN if scratch else budget.continued.reader("mean")).passage_max_length
    skip_from = CONDENSER.skip_from if scratch else cont.condenser_config(budget.continued.layers, 0).skip_from
    condenser = get("Condenser")
    torch.manual_seed(seed)  # the 15% masking of the probe batch
    ids = tok(texts, add_special_tokens=False, truncation=True, max_length=max_length - 2)["input_ids"]
    cls_use = cls_swap_cost(condenser.mlm, head_from(condenser).eval(), masked_batch(tok, ids), skip_from)
    co = [r["co"] for r in get("coCondenser").history.rows if "co" in r][-3:]
    batch = budget.continued.batch_size if not scratch else 32
    decoder_use = {}
    for row, config in (("RetroMAE", RETROMAE_WEAK), ("RetroMAE (strong decoder)", RETROMAE_STRONG)):
        checkpoint = get(row)
        decoder = retromae.decoder_from(checkpoint, config)
        own, shuffled = (retromae.reconstruction_loss(checkpoint.mlm, decoder, tok, texts, config, max_length,
                                                      shuffle_cls=s, seed=seed) for s in (False, True))
        decoder_use[row] = shuffled - own
    rows = SCRATCH_ROWS if scratch else CONTINUED_ROWS
    cosines = {row: mean_cosine(row_reader(study.protocol, row, data, budget, seed, smoke), texts)
               for row, (_, pooling) in rows.items() if pooling == "mean"}
    return Diagnostics(cls_use, float(np.mean(co)), float(np.log(2 * batch - 1)), decoder_use, cosines)


# --- what notebook 13 prints under "What to notice" -------------------------------------------------
def said(e: Effect) -> str:
    """"<label>: <verdict> (Δ, CI, seed spread)": a paper's verdict, or for any other gap robust / within noise."""
    word = e.verdict if e.claim else ("a robust gap" if e.robust else "within noise")
    return f"{e.label}: {word} (Δ {e.gap:+.3f} [{e.low:+.3f}, {e.high:+.3f}], seed spread ±{e.spread:.3f})"


def _floor_word(loss: float, floor: float, tolerance: float = 0.05) -> str:
    return "at" if abs(loss - floor) <= tolerance else ("above" if loss > floor else "below")


def notice_lines(scratch: Study, continued: Study, reasons: dict[str, Diagnostics]) -> list[str]:
    """The computed sentences of notebook 13's "What to notice": verdicts, reasons, resolution."""
    lines = []
    for name, study in (("from scratch", scratch), ("continued", continued)):
        for stage in study.stages:
            lines.append(f"- {name}, {stage}: " + "; ".join(said(e) for e in effects(study, stage)) + ".")
    zero = continued.stages[0]
    erased = gap(continued, "MLM (mean)", "as is (mean)", zero, "continued MLM vs the checkpoint as is")
    readout = gap(continued, "as is (mean)", "as is (CLS)", zero, "MiniLM read by mean pooling vs by [CLS]")
    lines.append(f"- Starting point: {said(readout)}; {said(erased)}.")
    for name, d in reasons.items():
        head = "reads" if d.condenser_cls_use > 0.01 else "barely reads"
        lines.append(f"- {name}: the Condenser head {head} the [CLS] (another passage's [CLS] costs it "
                     f"{d.condenser_cls_use:+.4f} nats/token); coCondenser's span loss is "
                     f"{_floor_word(d.span_loss, d.span_floor)} its uniform "
                     f"floor log(2n - 1) ({d.span_loss:.3f} vs {d.span_floor:.3f}); RetroMAE's decoders lose "
                     + ", ".join(f"{k} {v:+.4f}" for k, v in d.decoder_cls_use.items())
                     + " nats/token with another passage's [CLS].")
    cos = reasons["continued"].mean_cosine
    lines.append("- Mean cosine between passages (continued, mean-pooled rows): "
                 + ", ".join(f"{k} {v:.3f}" for k, v in cos.items()) + ".")
    widths = [e.high - e.low for st in continued.stages for e in effects(continued, st)]
    lines.append(f"- Resolution: a continued-protocol gap's 95% interval is {np.median(widths):.3f} MRR@10 wide "
                 f"(median) on {len(split_qrels(continued.data, 'test'))} test queries, seeds {list(continued.results)}.")
    return lines


def effects_markdown(study: Study) -> str:
    """docs/RESULTS.md's rows for one study: each paper effect per stage, gap, CI, seed spread, verdict."""
    lines = ["| effect | stage | Δ MRR@10 | 95% CI | per seed | seed spread | verdict |",
             "| --- | --- | ---: | --- | --- | ---: | --- |"]
    for stage in study.stages:
        for e in effects(study, stage):
            lines.append(f"| {e.label} | {stage} | {e.gap:+.3f} | [{e.low:+.3f}, {e.high:+.3f}] | "
                         + " ".join(f"{g:+.3f}" for g in e.per_seed) + f" | {e.spread:.3f} | {e.verdict} |")
    return "\n".join(lines)


def table_markdown(study: Study, measure: str = "MRR@10") -> str:
    """The study's table as markdown: ``measure`` per stage, mean ± std over seeds."""
    from retrlab.stats import mean_std

    stages = study.stages
    lines = ["| row | " + " | ".join(stages) + " |", "| --- |" + " ---: |" * len(stages)]
    for row in next(iter(study.results.values())):
        lines.append(f"| {row} | " + " | ".join(mean_std(mean_metric(study, row, s, measure)) for s in stages) + " |")
    return "\n".join(lines)
