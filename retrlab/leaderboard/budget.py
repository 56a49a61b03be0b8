"""What a leaderboard run may spend: one budget that every strategy gets, and three presets.

A fair comparison gives every strategy the same steps, batch, learning rate, passage length and
seeds (DPR's Table 3 and STAR's ablations compare at a fixed budget too). The budget also fixes
the data the run sees — the first N training / test queries, the corpus shrinking to their
articles (``RetrievalData.subset``) — and the budgets of the shared artifacts it builds (warm-up
retriever, STAR model, cross-encoder; ``retrlab.artifacts``, ``retrlab.rerank``).

Presets (CPU seconds measured with one thread on the shared 2-core machine, from an empty cache;
one loaded thread costs ≈ 2.4–2.7× the wall time of two free cores):

* ``SMOKE`` — proves the code runs (notebook 14 with one seed: ≈ 94 CPU-s including the data
  build); says nothing about the methods.
* ``DEFAULT`` — the classroom run, ≤ 5 minutes on 2 cores *from an empty cache*: the first 100
  training queries (~290 passages), the first 100 test queries, 6 steps of batch 8 per strategy at
  48 tokens, and small artifacts of its own (warm-up and STAR 10 × 8, a cross-encoder of 16 × 16
  pairs). Measured cold on 2 quiet cores: notebook 14 took 335 s at 8 steps / 120 test queries / a
  24-step cross-encoder (shared artifacts ≈ 76 s, training 170 s — AR2 alone 53 — evaluation 63 s)
  and 311 s at 6 steps, hence these cuts. At this size the cross-encoder does not beat the first
  stage on dev (0.461 → 0.436 with 24 steps), and most gaps are within noise.
* ``FULL`` — all of wiki-car, 60 steps of batch 16 at 64 tokens, the notebooks' own artifacts
  (the cache of notebooks 02–06 is reused): about an hour on 2 cores (estimated), minutes on a GPU.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, fields

from retrlab.artifacts import Budget
from retrlab.data.dataset import RetrievalData
from retrlab.rerank import CrossEncoderBudget
from retrlab.train import TrainConfig


@dataclass(frozen=True)
class LeaderboardBudget:
    steps: int  # retriever updates per strategy (AR2 adds ranker steps on top: see its time)
    batch_size: int  # training queries per step
    max_length: int  # passage tokens, in training and in evaluation
    depth: int  # pool depth the hard-negative samplers draw from (STAR, ANCE, SimANS; ADORE's top-k)
    train_queries: int | None = None  # the first N training queries (None: all)
    test_queries: int | None = None
    dev_queries: int | None = None  # only the cross-encoder's build report reads dev
    warmup: Budget | None = None  # None: the artifacts' own budget (shared with notebooks 02-06)
    star: Budget | None = None
    cross_encoder: CrossEncoderBudget | None = None
    lr: float = 2e-5
    tau: float = 0.05
    smoke: bool = False  # which artifact defaults (and cache keys) apply when a budget above is None

    def __post_init__(self) -> None:
        for name in ("steps", "batch_size", "max_length", "depth"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"LeaderboardBudget.{name} must be an integer >= 1, got {value!r}")
        if self.batch_size < 2:
            raise ValueError(f"LeaderboardBudget.batch_size must be >= 2 (in-batch negatives), "
                             f"got {self.batch_size}")
        for name in ("train_queries", "test_queries", "dev_queries"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, int) or value < 1):
                raise ValueError(f"LeaderboardBudget.{name} must be None (all) or an integer >= 1, "
                                 f"got {value!r}")

    def narrow(self, data: RetrievalData) -> RetrievalData:
        """The data this budget trains and tests on (the whole dataset when no size is set)."""
        wanted = [("train", self.train_queries), ("dev", self.dev_queries), ("test", self.test_queries)]
        sizes = {split: n for split, n in wanted if n is not None and split in data.splits}
        return data.subset(sizes) if sizes else data

    def config(self, seed: int) -> TrainConfig:
        return TrainConfig(steps=self.steps, batch_size=self.batch_size, lr=self.lr, tau=self.tau, seed=seed)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, raw: dict) -> LeaderboardBudget:
        nested = {"warmup": Budget, "star": Budget, "cross_encoder": CrossEncoderBudget}
        known = {f.name for f in fields(cls)}
        return cls(**{k: (nested[k](**v) if k in nested and v is not None else v)
                      for k, v in raw.items() if k in known})


SMOKE = LeaderboardBudget(steps=2, batch_size=4, max_length=32, depth=10, train_queries=24, test_queries=30,
                          dev_queries=20, smoke=True)  # artifacts: their own smoke budgets
DEFAULT = LeaderboardBudget(
    steps=6, batch_size=8, max_length=48, depth=30, train_queries=100, test_queries=100, dev_queries=40,
    warmup=Budget(steps=10, batch_size=8, max_length=48), star=Budget(steps=10, batch_size=8, max_length=48),
    cross_encoder=CrossEncoderBudget(steps=16, batch_size=4, negatives=3, max_length=64, lr=1e-4, eval_queries=20))
FULL = LeaderboardBudget(steps=60, batch_size=16, max_length=64, depth=200)  # notebooks 02-06's artifacts


def preset(smoke: bool = False, full: bool = False) -> LeaderboardBudget:
    if smoke and full:
        raise ValueError("choose smoke or full, not both")
    return SMOKE if smoke else FULL if full else DEFAULT
