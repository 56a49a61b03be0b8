"""Every fine-tuning method as a leaderboard entry: one function ``(context, seed) -> Trained``.

Each function calls the package's own module for its method — the rules live in
``retrlab.negatives.*`` (paper and official code file in each docstring), the shared models in
``retrlab.artifacts`` and ``retrlab.rerank`` — and adds nothing but the protocol:

* **one start**: a copy of the cached warm-up retriever (MiniLM + BM25 negatives, the stand-in for
  ANCE's "BM25 warm-up" checkpoint that ANCE, STAR and AR2 all start from), except ADORE, which is
  by definition a second stage: the query tower of the cached STAR model, on STAR's frozen index;
* **one budget** (``LeaderboardBudget``): the same steps, batch, learning rate, passage length and
  seed for every strategy;
* **one measurement** (``run_entry``): test MRR@10 / R@20 / nDCG@10 graded with the complete
  ground truth, the share of the negatives actually trained on that are hidden positives
  (``RecordingSampler``'s count), and the seconds of training — wall time, and CPU time, which
  barely moves when other jobs share the machine.

Some entries are *controls* (``Entry.control``): each removes one ingredient of a method, so the gap
between the two rows is that ingredient's effect. ``ar2-no-ranker`` is AR2 without its ranker (the same
refreshes and groups, the listwise loss alone); ``ar2-distillation-only`` and ``ar2-adversarial-only``
keep the ranker but one of the two terms of the retriever's loss (λ = 0, λ = 1); ``rocketqa-fill-only``
samples the window RocketQA's denoised sampler refills from (pool ranks 11-50) with no cross-encoder.
They run only when named (``default_strategies`` leaves them out); the full board holds them all.

Shared preparation (artifacts, pools, the cross-encoder's scores, STAR's frozen vectors, AR2's first
refresh: the warm-up retriever's top-10, the same for every AR2 game) happens once per ``Context``,
outside every strategy's timer, and is timed in ``context.prep_seconds``.
"""
from __future__ import annotations

import copy
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from retrlab import artifacts
from retrlab.constants import BM25_DEPTH, LEADERBOARD_MEASURES, POOL_DEPTH
from retrlab.data.dataset import RetrievalData
from retrlab.encoders import BiEncoder, CrossEncoder
from retrlab.evaluation import dense_run, encode_corpus, evaluate_run
from retrlab.leaderboard.budget import LeaderboardBudget
from retrlab.methods.adore import AdoreStep, freeze_passage_tower
from retrlab.methods.ance import AnceNegatives
from retrlab.methods.ar2 import AR2Config, candidate_universe, refresh_pool, train_ar2
from retrlab.methods.rocketqa import cross_batch_step
from retrlab.methods.star import star_step, static_hard_negatives, train_star
from retrlab.negatives.denoise import denoised_from_pool, keep_as_negative
from retrlab.negatives.simans import simans_negatives
from retrlab.negatives.uniform import RecordingSampler, uniform_from_pool
from retrlab.pool import CandidatePool, bm25_pool, false_negative_rate
from retrlab.rerank import score_candidates
from retrlab.train import Hook, no_negatives, train

ROCKETQA_DEPTH, ROCKETQA_THRESHOLD = 10, 0.1  # candidates the cross-encoder scores; ce_threshold_neg
ROCKETQA_FILL = 50  # the denoised sampler refills from pool ranks ROCKETQA_DEPTH + 1 .. ROCKETQA_FILL
AR2_NEGATIVES, AR2_DEPTH, AR2_UNIVERSE = 3, 10, 15  # notebook 06's group size, refresh depth, universe


class Context:
    """The (narrowed) data and the shared artifacts of one leaderboard, built lazily and timed.

    Every artifact comes from the cached package functions under the budget's artifact budgets,
    so a second leaderboard on the same budget loads them in seconds.
    """

    def __init__(self, data: RetrievalData, budget: LeaderboardBudget) -> None:
        self.budget, self.data = budget, budget.narrow(data)
        self.prep_seconds: dict[str, float] = {}
        self._built: dict[str, object] = {}

    def _get(self, name: str, build: Callable[[], object]):
        if name not in self._built:
            started = time.perf_counter()
            self._built[name] = build()
            self.prep_seconds[name] = time.perf_counter() - started
        return self._built[name]

    @property
    def warmup(self) -> BiEncoder:
        b = self.budget
        return self._get("warm-up retriever",
                         lambda: artifacts.warmup_retriever(self.data, smoke=b.smoke, budget=b.warmup))

    @property
    def warmup_pool(self) -> CandidatePool:
        b = self.budget
        _ = self.warmup  # the retriever is built (and timed) on its own first
        return self._get("warm-up pool",
                         lambda: artifacts.warmup_pool(self.data, POOL_DEPTH, smoke=b.smoke, budget=b.warmup))

    @property
    def bm25_pool(self) -> CandidatePool:
        return self._get("BM25 pool", lambda: bm25_pool(self.data, "train", depth=BM25_DEPTH))

    @property
    def star(self) -> BiEncoder:
        b = self.budget
        return self._get("STAR model", lambda: artifacts.star_retriever(
            self.data, smoke=b.smoke, budget=b.star, warmup=b.warmup))

    @property
    def star_vectors(self) -> dict[str, np.ndarray]:
        """STAR's frozen passage vectors of the train corpus (ADORE's index) and of the test corpus."""
        star = self.star  # built (and timed) on its own first
        return self._get("STAR passage vectors", lambda: {
            split: encode_corpus(self.fresh(star), self.data, self.data.search_pids(split), progress=False)
            for split in ("train", "test")})

    @property
    def ranker(self) -> CrossEncoder:
        """The shared cross-encoder: RocketQA's denoiser, AR2's ranker."""
        budget = self.budget
        return self._get("cross-encoder", lambda: artifacts.cross_encoder(self.data, smoke=budget.smoke,
                                                                          budget=budget.cross_encoder,
                                                                          warmup=budget.warmup))

    @property
    def ce_probabilities(self) -> dict[str, np.ndarray]:
        """The cross-encoder's P(relevant) for each training query's top-``ROCKETQA_DEPTH`` candidates."""
        pool, ranker = self.warmup_pool, self.ranker  # built (and timed) on their own first
        qids = [q for q in pool.qids if pool.candidates(q)[0]]
        candidates = [pool.candidates(q)[0][:ROCKETQA_DEPTH] for q in qids]
        return self._get("cross-encoder scores", lambda: dict(zip(qids, score_candidates(
            ranker, self.data, qids, candidates, progress=False))))

    @property
    def ar2_start(self) -> tuple[list[str], list[str], CandidatePool]:
        """AR2's training queries, the universe a refresh re-encodes, and the warm-up retriever's refresh
        of it: iteration 1's pool of every AR2 game (each entry, each seed), computed once."""
        pool = self.warmup_pool  # built (and timed) on its own first

        def build() -> tuple[list[str], list[str], CandidatePool]:
            qids = [q for q in pool.qids if len(pool.candidates(q)[0]) >= AR2_NEGATIVES]
            universe = candidate_universe(pool, self.data, qids, AR2_UNIVERSE)
            return qids, universe, refresh_pool(self.fresh(self.warmup), self.data, qids, universe, AR2_DEPTH)
        return self._get("AR2's first refresh", build)

    def ranker_notes(self) -> dict:
        """How good the cross-encoder was (its dev re-ranking report) and the share of scored
        candidates RocketQA's filter kept as negatives; empty when no strategy needed it."""
        b, notes = self.budget, {}
        if "cross-encoder" in self._built:
            notes["cross-encoder report"] = artifacts.cross_encoder_report(
                self.data, smoke=b.smoke, budget=b.cross_encoder, warmup=b.warmup)
        if "cross-encoder scores" in self._built:
            probs = np.concatenate(list(self.ce_probabilities.values()))
            notes["denoising keeps"] = float(keep_as_negative(probs, ROCKETQA_THRESHOLD).mean())
        return notes

    def fresh(self, model: BiEncoder) -> BiEncoder:
        """A trainable copy of ``model`` reading passages at the budget's max length."""
        model = copy.deepcopy(model)
        model.passage_max_length = self.budget.max_length
        return model


class Clock:
    """Wall and CPU seconds (all threads of this process) since it was made."""

    def __init__(self) -> None:
        self.wall, self.cpu = time.perf_counter(), time.process_time()

    def read(self) -> tuple[float, float]:
        return time.perf_counter() - self.wall, time.process_time() - self.cpu


@dataclass
class Trained:
    model: BiEncoder
    seconds: float  # training only (wall): shared preparation is timed in the context
    cpu_seconds: float
    picks: list[tuple[str, list[str]]] | None  # (qid, negatives) trained on; None = in-batch only
    steps: int  # retriever updates actually made
    test_vectors: np.ndarray | None = None  # frozen passage vectors (ADORE), else re-encoded
    extra: dict = field(default_factory=dict)


def _train(ctx: Context, seed: int, start: BiEncoder, sampler=no_negatives, step_fn=None,
           hooks: list[Hook] = ()) -> tuple[BiEncoder, float, float]:
    model = ctx.fresh(start)
    clock = Clock()
    train(model, ctx.data, ctx.budget.config(seed), sampler=sampler, hooks=hooks, step_fn=step_fn,
          progress=False)
    return model, *clock.read()


def train_from_warmup(ctx: Context, seed: int, sampler, step_fn=None) -> Trained:
    """Fine-tune a copy of the warm-up retriever with ``sampler``'s negatives, recording each one."""
    recorder = RecordingSampler(sampler)
    model, wall, cpu = _train(ctx, seed, ctx.warmup, recorder, step_fn)
    return Trained(model, wall, cpu, recorder.picks, ctx.budget.steps)


def run_inbatch(ctx: Context, seed: int) -> Trained:
    """DPR's in-batch negatives: the other queries' positives (``retrlab.train.contrastive_loss``)."""
    model, wall, cpu = _train(ctx, seed, ctx.warmup)
    return Trained(model, wall, cpu, None, ctx.budget.steps)


def run_bm25(ctx: Context, seed: int) -> Trained:
    """DPR: in-batch + one BM25 negative per query (``uniform_from_pool`` on a BM25 pool)."""
    return train_from_warmup(ctx, seed, uniform_from_pool(ctx.bm25_pool, n=1, depth=BM25_DEPTH))


def run_star(ctx: Context, seed: int) -> Trained:
    """STAR: one static hard negative from the warm-up pool + random (in-batch) ones, pairwise loss."""
    pool = ctx.warmup_pool
    recorder = RecordingSampler(static_hard_negatives(pool, n=1, depth=ctx.budget.depth))
    model = ctx.fresh(ctx.warmup)
    clock = Clock()
    train_star(model, ctx.data, pool, ctx.budget.config(seed), sampler=recorder, progress=False)
    return Trained(model, *clock.read(), recorder.picks, ctx.budget.steps)


def run_ance(ctx: Context, seed: int) -> Trained:
    """ANCE: negatives from the model's own top-``depth``, re-mined once half-way (pairwise loss)."""
    steps = ctx.budget.steps
    negatives = AnceNegatives(ctx.data, ctx.warmup_pool, depth=ctx.budget.depth, n=1)
    recorder = RecordingSampler(negatives)
    model, wall, cpu = _train(ctx, seed, ctx.warmup, recorder, star_step(random_negatives=False),
                              hooks=[negatives.hook(max(1, steps // 2), steps)])
    return Trained(model, wall, cpu, recorder.picks, steps, extra={"refreshes": len(negatives.log)})


def run_adore(ctx: Context, seed: int) -> Trained:
    """ADORE: STAR's query tower against the current top-k of STAR's frozen passage index."""
    vectors = ctx.star_vectors
    step = AdoreStep(vectors["train"], ctx.data.search_pids("train"), k=ctx.budget.depth)
    model = freeze_passage_tower(ctx.fresh(ctx.star))
    clock = Clock()
    train(model, ctx.data, ctx.budget.config(seed), step_fn=step, progress=False)
    return Trained(model, *clock.read(), step.picks, ctx.budget.steps, vectors["test"])


def _shards(ctx: Context) -> int:
    return 2 if ctx.budget.batch_size % 2 == 0 else 1  # two simulated workers, as in notebook 05


def run_rocketqa_hard(ctx: Context, seed: int) -> Trained:
    """RocketQA's ablation: cross-batch negatives + a hard negative from the top-10, *not* denoised."""
    return train_from_warmup(ctx, seed, uniform_from_pool(ctx.warmup_pool, n=1, depth=ROCKETQA_DEPTH),
                     cross_batch_step(_shards(ctx)))


def run_rocketqa_denoised(ctx: Context, seed: int) -> Trained:
    """RocketQA: the same, keeping only candidates the cross-encoder scores below 0.1."""
    sampler = denoised_from_pool(ctx.warmup_pool, ctx.ce_probabilities, n=1, threshold=ROCKETQA_THRESHOLD,
                                 fill_depth=ROCKETQA_FILL)
    return train_from_warmup(ctx, seed, sampler, cross_batch_step(_shards(ctx)))


def run_rocketqa_fill_only(ctx: Context, seed: int) -> Trained:
    """RocketQA's control: the denoised sampler's refill window (pool ranks 11-50), no cross-encoder.

    The filter vetoes most of the top-10, so most denoised negatives come from the refill: this row
    tells how much of denoising's gain is the filter's judgement and how much is sampling deeper.
    """
    sampler = uniform_from_pool(ctx.warmup_pool, n=1, depth=ROCKETQA_FILL, skip=ROCKETQA_DEPTH)
    return train_from_warmup(ctx, seed, sampler, cross_batch_step(_shards(ctx)))


def play_ar2(ctx: Context, seed: int, ranker: CrossEncoder | None, lam: float = 0.5) -> Trained:
    """AR2's protocol on the budget: two refreshes of the retriever's top-10, groups of 1 + 3.

    ``ranker``: the player the retriever plays against (a copy, trained in the game), or None for
    the control — the same groups, refreshes and listwise loss, no ranker (notebook 06's baseline).
    ``lam``: the retriever loss's weight on the adversarial term, ``1 - lam`` on distillation.
    """
    b, (qids, universe, first_pool) = ctx.budget, ctx.ar2_start
    iterations = min(2, b.steps)  # a refresh before each iteration
    per = b.steps // iterations
    config = AR2Config(iterations=iterations, ranker_steps=max(1, per // 3), retriever_steps=per,
                       batch_size=b.batch_size, negatives=AR2_NEGATIVES, depth=AR2_DEPTH, tau=b.tau,
                       retriever_lr=b.lr, lam=lam, seed=seed)
    retriever, picks = ctx.fresh(ctx.warmup), []
    clock = Clock()
    train_ar2(retriever, ranker, ctx.data, qids, universe, config, progress=False, picks=picks, first_pool=first_pool)
    ranker_steps = iterations * config.ranker_steps if ranker is not None else 0
    return Trained(retriever, *clock.read(), picks, iterations * per, extra={"ranker_steps": ranker_steps})


def run_ar2(ctx: Context, seed: int) -> Trained:
    """AR2: ranker and retriever alternate on groups from the retriever's refreshed top-10."""
    return play_ar2(ctx, seed, copy.deepcopy(ctx.ranker))


def run_ar2_no_ranker(ctx: Context, seed: int) -> Trained:
    """AR2's control: its retriever trained alone (no ranker: listwise CE on the same kind of groups)."""
    return play_ar2(ctx, seed, None)


def run_ar2_distillation_only(ctx: Context, seed: int) -> Trained:
    """AR2's control: the game with λ = 0, the retriever only distils the ranker's distribution."""
    return play_ar2(ctx, seed, copy.deepcopy(ctx.ranker), lam=0.0)


def run_ar2_adversarial_only(ctx: Context, seed: int) -> Trained:
    """AR2's control: the game with λ = 1, the retriever only follows the adversarial reward."""
    return play_ar2(ctx, seed, copy.deepcopy(ctx.ranker), lam=1.0)


def run_topk(ctx: Context, seed: int) -> Trained:
    """SimANS' baseline: one negative drawn uniformly from the warm-up pool's top-``ROCKETQA_DEPTH``."""
    return train_from_warmup(ctx, seed, uniform_from_pool(ctx.warmup_pool, n=1, depth=ROCKETQA_DEPTH))


def run_simans(ctx: Context, seed: int) -> Trained:
    """SimANS: one negative sampled near the positive's score from the warm-up pool (NQ kernel)."""
    tau = ctx.budget.tau  # notebook 07: the NQ script's a=0.5, b=1 moved from dot products to cosines/τ
    return train_from_warmup(ctx, seed, simans_negatives(ctx.warmup_pool, n=1, a=0.5 / tau ** 2, b=1.0 * tau,
                                                 depth=ctx.budget.depth, kernel="gaussian-code"))


@dataclass(frozen=True)
class Entry:
    name: str
    title: str
    paper: str
    start: str  # the model it fine-tunes
    train: Callable[[Context, int], Trained]
    paper_mrr10: float | None  # MS MARCO passage dev MRR@10 reported for it (docs/methods.md, per method)
    control: bool = False  # an ablation that isolates one ingredient of a method: run on request only


ENTRIES: dict[str, Entry] = {s.name: s for s in [
    Entry("inbatch", "DPR in-batch", "Karpukhin et al. 2020", "warm-up", run_inbatch, 0.264),
    Entry("bm25", "DPR + BM25 negative", "Karpukhin et al. 2020", "warm-up", run_bm25, 0.299),
    Entry("star", "STAR", "Zhan et al. 2021", "warm-up", run_star, 0.340),
    Entry("ance", "ANCE", "Xiong et al. 2021", "warm-up", run_ance, 0.330),
    Entry("adore", "ADORE + STAR", "Zhan et al. 2021", "STAR", run_adore, 0.347),
    Entry("rocketqa-hard", "RocketQA hard, not denoised", "Qu et al. 2021", "warm-up", run_rocketqa_hard,
             0.260),
    Entry("rocketqa-denoised", "RocketQA denoised", "Qu et al. 2021", "warm-up", run_rocketqa_denoised,
             0.364),
    Entry("ar2", "AR2", "Zhang et al. 2022", "warm-up", run_ar2, 0.395),
    Entry("topk", "top-k hard negative", "Zhou et al. 2022", "warm-up", run_topk, None),
    Entry("simans", "SimANS", "Zhou et al. 2022", "warm-up", run_simans, 0.409),
    Entry("rocketqa-fill-only", "RocketQA's refill, no filter", "Qu et al. 2021", "warm-up",
          run_rocketqa_fill_only, None, control=True),
    Entry("ar2-no-ranker", "AR2's retriever, no ranker", "Zhang et al. 2022", "warm-up", run_ar2_no_ranker,
          None, control=True),
    Entry("ar2-distillation-only", "AR2, distillation only", "Zhang et al. 2022", "warm-up",
          run_ar2_distillation_only, None, control=True),
    Entry("ar2-adversarial-only", "AR2, adversarial only", "Zhang et al. 2022", "warm-up",
          run_ar2_adversarial_only, None, control=True),
]}


def default_strategies() -> list[str]:
    """The strategies a leaderboard runs when none are named: every entry but the controls."""
    return [name for name, entry in ENTRIES.items() if not entry.control]


def get_entry(name: str) -> Entry:
    if name not in ENTRIES:
        raise ValueError(f"unknown strategy {name!r}; choose one of: {', '.join(ENTRIES)}")
    return ENTRIES[name]


@dataclass
class Result:
    strategy: str
    seed: int | None  # None for a reference row (no training)
    metrics: dict[str, float]  # test MEASURES
    run: dict[str, dict[str, float]]  # test top-20 per query, for paired comparisons
    fn_rate: float | None  # hidden positives among the negatives trained on; None = no extra negative
    negatives: int  # how many extra negatives it trained on
    train_seconds: float  # wall
    eval_seconds: float
    steps: int
    start: str
    extra: dict = field(default_factory=dict)
    train_cpu_seconds: float = 0.0  # CPU time of training, all threads: robust to other jobs


def measure(ctx: Context, model: BiEncoder,
             passage_vectors: np.ndarray | None = None) -> tuple[dict, dict, float]:
    """(test metrics, test run at depth 20, seconds) of a bi-encoder."""
    started = time.perf_counter()
    run = dense_run(model, ctx.data, "test", k=20, passage_vectors=passage_vectors, progress=False)
    return evaluate_run(run, ctx.data, "test", LEADERBOARD_MEASURES), run, time.perf_counter() - started


def run_entry(name: str, data: RetrievalData, budget: LeaderboardBudget, seed: int, *,
                 context: Context | None = None) -> Result:
    """Train strategy ``name`` on ``budget`` with ``seed`` and measure it on the test split.

    ``context`` shares the artifacts of earlier calls; it must have been made from ``data`` and ``budget``.
    """
    spec = get_entry(name)
    if context is not None and context.budget != budget:
        raise ValueError("the context was built for another budget")
    ctx = context or Context(data, budget)
    trained = spec.train(ctx, seed)
    metrics, run, eval_seconds = measure(ctx, trained.model, trained.test_vectors)
    negatives = sum(len(negs) for _, negs in trained.picks or [])
    fn_rate = false_negative_rate(trained.picks, ctx.data.qrels) if negatives else None  # None: no extra negative
    return Result(name, seed, metrics, run, fn_rate, negatives, trained.seconds, eval_seconds, trained.steps,
                  spec.start, trained.extra, trained.cpu_seconds)
