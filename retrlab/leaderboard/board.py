"""Run every strategy on every seed, then tabulate, compare, plot and save the results.

A gap between two strategies is called real only when two kinds of noise both allow it:

* **query noise** — a paired bootstrap over test queries (``retrlab.stats.paired_bootstrap``) on the
  per-query scores averaged over seeds: does the gap survive resampling the test set?
* **seed noise** — the spread of each strategy's score over seeds (batches, dropout, sampling):
  a gap smaller than the two spreads together could flip with the next seed.

Results are saved as one JSON file (atomic, ``retrlab.cache``) holding the budget, every run and
the preparation times, and a PNG of the scores with their spread. With ``cache=True`` (what
``retrlab leaderboard`` does) each (strategy, seed) result is also cached under
``$RETRLAB_HOME/results/leaderboard/``: an interrupted hour-long run resumes where it stopped, and a
notebook reads a finished one with ``stored_board`` (the full board of notebooks 01, 02, 05, 07, 14).
"""
from __future__ import annotations

import hashlib
import json
import os
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from retrlab.artifacts import cached_result, fingerprint
from retrlab.cache import atomic_write_json, home, intact, load_json
from retrlab.constants import LEADERBOARD_MEASURES
from retrlab.data.dataset import RetrievalData
from retrlab.evaluation import bm25_run, evaluate_run, split_qrels
from retrlab.leaderboard.budget import LeaderboardBudget
from retrlab.leaderboard.entries import ENTRIES, Context, Result, default_strategies, get_entry, measure, run_entry
from retrlab.stats import Comparison, mean_std, paired_bootstrap, per_query


@dataclass
class Leaderboard:
    budget: LeaderboardBudget
    results: list[Result]  # one per (strategy, seed)
    references: list[Result] = field(default_factory=list)  # untrained rows: warm-up, STAR, BM25
    prep_seconds: dict[str, float] = field(default_factory=dict)
    wall_seconds: float = 0.0
    qrels: dict[str, dict[str, int]] = field(default_factory=dict)  # the test ground truth graded against
    notes: dict = field(default_factory=dict)  # the cross-encoder's report, RocketQA's kept share

    # --- views ---------------------------------------------------------------------------------
    def strategies(self) -> list[str]:
        return list(dict.fromkeys(r.strategy for r in self.results))

    def seeds(self) -> list[int]:
        return sorted({r.seed for r in self.results})

    def rows(self, name: str) -> list[Result]:
        rows = [r for r in self.results + self.references if r.strategy == name]
        if not rows:
            raise KeyError(f"no result for {name!r}; this leaderboard has {self.strategies()} "
                           f"and references {[r.strategy for r in self.references]}")
        return rows

    def scores(self, name: str, measure: str = "MRR@10") -> np.ndarray:
        """(seeds,) the strategy's test score per seed."""
        return np.array([r.metrics[measure] for r in self.rows(name)])

    def ranking(self, measure: str = "MRR@10") -> list[str]:
        return sorted(self.strategies(), key=lambda n: -self.scores(n, measure).mean())

    def per_query(self, name: str, measure: str = "MRR@10") -> dict[str, float]:
        """Per-query score averaged over the strategy's seeds."""
        values = [per_query(r.run, self.qrels, measure) for r in self.rows(name)]
        return {q: float(np.mean([v[q] for v in values])) for q in values[0]}

    def table(self, measures: tuple[str, ...] = LEADERBOARD_MEASURES) -> str:
        """The leaderboard as text: best first, mean ± std over seeds, then the untrained references."""
        header = ["strategy", "start", *measures, "FN negs", "negs", "train s", "cpu s", "paper"]
        lines = [header]
        for name in self.ranking(measures[0]):
            rows, spec = self.rows(name), ENTRIES[name]
            fn = [r.fn_rate for r in rows if r.fn_rate is not None]
            lines.append([spec.title, spec.start, *(mean_std(self.scores(name, m)) for m in measures),
                          f"{np.mean(fn):.1%}" if fn else "-", str(rows[0].negatives),
                          f"{np.mean([r.train_seconds for r in rows]):.1f}",
                          f"{np.mean([r.train_cpu_seconds for r in rows]):.1f}",
                          "-" if spec.paper_mrr10 is None else f"{spec.paper_mrr10:.3f}"])
        references = [[r.strategy, "-", *(f"{r.metrics[m]:.3f}" for m in measures), *["-"] * 5]
                      for r in self.references]
        widths = [max(len(line[c]) for line in lines + references) for c in range(len(header))]

        def fmt(line: list[str]) -> str:
            cells = zip(line, widths)
            return "  ".join(cell.ljust(w) if c < 2 else cell.rjust(w) for c, (cell, w) in enumerate(cells))

        rule = "-" * len(fmt(header))
        return "\n".join([fmt(lines[0]), rule, *map(fmt, lines[1:]), *([rule] if references else []),
                          *map(fmt, references)])

    # --- comparisons ---------------------------------------------------------------------------
    def seed_spread(self, a: str, b: str, measure: str = "MRR@10") -> float:
        """The two rows' standard deviations over seeds, added (a single-seed or reference row adds 0)."""
        return sum(float(np.std(self.scores(n, measure), ddof=1)) if len(self.rows(n)) > 1 else 0.0
                   for n in (a, b))

    def compare(self, a: str, b: str, measure: str = "MRR@10") -> tuple[Comparison, bool, str]:
        """(bootstrap comparison, robust?, sentence) for strategy ``a`` against ``b`` (strategy or reference).

        Robust = the bootstrap interval excludes 0 *and* the gap exceeds the two seed spreads added.
        """
        comparison = paired_bootstrap(self.per_query(a, measure), self.per_query(b, measure),
                                      a=_title(a), b=_title(b), measure=measure)
        spread = self.seed_spread(a, b, measure)
        robust = comparison.robust(spread)
        text = comparison.verdict()
        if comparison.significant and not robust:
            text += f" — but the gap is within the seed spread (±{spread:.3f} together): not robust"
        return comparison, robust, text

    # --- persistence ---------------------------------------------------------------------------
    def to_dict(self) -> dict:
        return {"budget": self.budget.to_dict(), "results": [asdict(r) for r in self.results],
                "references": [asdict(r) for r in self.references], "prep_seconds": self.prep_seconds,
                "wall_seconds": self.wall_seconds, "qrels": self.qrels, "notes": self.notes}

    @classmethod
    def from_dict(cls, raw: dict) -> Leaderboard:
        return cls(LeaderboardBudget.from_dict(raw["budget"]), [Result(**r) for r in raw["results"]],
                   [Result(**r) for r in raw["references"]], raw["prep_seconds"], raw["wall_seconds"],
                   raw["qrels"], raw.get("notes", {}))

    def save(self, folder: str | Path, measure: str = "MRR@10") -> tuple[Path, Path]:
        """Write ``results.json`` and ``leaderboard.png`` into ``folder`` (each atomically)."""
        import matplotlib.pyplot as plt

        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        json_path = atomic_write_json(folder / "results.json", self.to_dict())
        fig = plot_leaderboard(self, measure)
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=".leaderboard.", suffix=".png")
        os.close(fd)
        try:
            fig.savefig(tmp, dpi=110, bbox_inches="tight")
            os.replace(tmp, folder / "leaderboard.png")
        finally:
            Path(tmp).unlink(missing_ok=True)
            plt.close(fig)
        return json_path, folder / "leaderboard.png"

    @classmethod
    def load(cls, folder: str | Path) -> Leaderboard:
        return cls.from_dict(load_json(Path(folder) / "results.json"))


def _title(name: str) -> str:
    return ENTRIES[name].title if name in ENTRIES else name


REFERENCE_ROWS = ("warm-up (start)", "STAR (ADORE's start)", "BM25")  # fixed models (STAR's when ADORE ran)


def reference_results(ctx: Context, strategies: list[str]) -> list[Result]:
    """Untrained rows to read the table against: the warm-up start, STAR (ADORE's start), BM25."""
    rows = [(REFERENCE_ROWS[0], ctx.fresh(ctx.warmup), None)]
    if "adore" in strategies:
        rows.append((REFERENCE_ROWS[1], ctx.fresh(ctx.star), ctx.star_vectors["test"]))
    out = []
    for name, model, vectors in rows:
        metrics, run, seconds = measure(ctx, model, vectors)
        out.append(Result(name, None, metrics, run, None, 0, 0.0, seconds, 0, "-"))
    started = time.perf_counter()
    run = bm25_run(ctx.data, "test", k=20)
    metrics = evaluate_run(run, ctx.data, "test", LEADERBOARD_MEASURES)
    out.append(Result(REFERENCE_ROWS[2], None, metrics, run, None, 0, 0.0, time.perf_counter() - started, 0, "-"))
    return out


LEADERBOARD_VERSION = "v1"  # bump when an entry's protocol changes, so old cached results are not reused
# The full board: every strategy at the FULL preset (all of wiki-car, 60 steps x 16), three seeds each,
# and the controls (RocketQA's refill without the filter; AR2 without the ranker, and with one term of its
# loss only); about two and a half hours on 2 cores. Built by the command below, read by notebooks 01-07, 14.
FULL_BOARD_STRATEGIES = ("inbatch", "topk", "simans", "star", "bm25", "rocketqa-hard", "rocketqa-denoised",
                         "ance", "adore", "ar2", "rocketqa-fill-only", "ar2-no-ranker", "ar2-distillation-only",
                         "ar2-adversarial-only")
FULL_BOARD_SEEDS = (0, 1, 2)


def full_board_command(strategies: tuple[str, ...] | list[str], seeds: tuple[int, ...] | list[int]) -> str:
    """The command that builds (or completes: it resumes from the cache) these full-board results."""
    return f"retrlab leaderboard --full --strategies {' '.join(strategies)} --seeds {' '.join(map(str, seeds))}"


FULL_BOARD_COMMAND = full_board_command(FULL_BOARD_STRATEGIES, FULL_BOARD_SEEDS)


def board_key(data: RetrievalData, budget: LeaderboardBudget) -> str:
    """Cache folder of one board's results: the data's fingerprint and the whole budget in the key."""
    budget_key = hashlib.sha1(json.dumps(budget.to_dict(), sort_keys=True).encode()).hexdigest()[:12]
    return f"leaderboard/{LEADERBOARD_VERSION}-{fingerprint(data)}-{budget_key}"


def result_name(data: RetrievalData, budget: LeaderboardBudget, strategy: str, seed: int) -> str:
    """Cache name of one (strategy, seed) result."""
    return f"{board_key(data, budget)}/{strategy}-seed{seed}"


def reference_name(data: RetrievalData, budget: LeaderboardBudget, reference: str) -> str:
    """Cache name of one untrained reference row (``REFERENCE_ROWS``)."""
    return f"{board_key(data, budget)}/reference-{REFERENCE_ROWS.index(reference)}"


def _result(data: RetrievalData, budget: LeaderboardBudget, name: str, seed: int, ctx: Context,
            cache: bool) -> Result:
    if not cache:
        return run_entry(name, data, budget, seed, context=ctx)
    raw = cached_result(result_name(data, budget, name, seed),
                        lambda: asdict(run_entry(name, data, budget, seed, context=ctx)))
    return Result(**raw)


def stored_board(data: RetrievalData, budget: LeaderboardBudget, strategies: tuple[str, ...] | list[str],
                 seeds: tuple[int, ...] | list[int]) -> Leaderboard | None:
    """The leaderboard of ``strategies`` × ``seeds`` from cached results only (``run_leaderboard(...,
    cache=True)`` stored them), or None when any is missing. Nothing is trained; the board holds the
    reference rows that run stored, and its ``wall_seconds`` is the training and evaluation time the
    results record."""
    def stored(name: str) -> Path:
        return home() / "results" / name

    def held(folder: Path) -> bool:
        return folder.is_dir() and intact(folder)

    folders = [stored(result_name(data, budget, n, s)) for n in strategies for s in seeds]
    if not all(held(f) for f in folders):
        return None
    results = [Result(**load_json(f / "result.json")) for f in folders]
    references = [Result(**load_json(f / "result.json")) for f in
                  (stored(reference_name(data, budget, r)) for r in REFERENCE_ROWS) if held(f)]
    spent = sum(r.train_seconds + r.eval_seconds for r in results)
    return Leaderboard(budget, results, references, {}, spent, split_qrels(budget.narrow(data), "test"))


def run_leaderboard(data: RetrievalData, budget: LeaderboardBudget, strategies: list[str] | None = None,
                    seeds: tuple[int, ...] | list[int] = (0, 1), *, progress: bool = True,
                    cache: bool = False) -> Leaderboard:
    """Every strategy × seed on one budget (shared artifacts built once), plus the reference rows.

    ``cache``: load each (strategy, seed) result already cached, and cache each one trained here, and
    the reference rows (``stored_board`` reads them back).
    """
    names = list(strategies) if strategies else default_strategies()
    for name in names:
        get_entry(name)  # an unknown name fails now, not after minutes of training
    if not seeds:
        raise ValueError("give at least one seed")
    started = time.perf_counter()
    ctx = Context(data, budget)
    results = []
    bar = tqdm(total=len(names) * len(seeds), desc="leaderboard", disable=not progress)
    for name in names:
        for seed in seeds:
            bar.set_postfix_str(f"{name}, seed {seed}")
            results.append(_result(data, budget, name, seed, ctx, cache))
            bar.update(1)
    bar.close()
    references = reference_results(ctx, names)
    for row in references if cache else []:  # fixed models, so the same every run: stored once
        cached_result(reference_name(data, budget, row.strategy), lambda row=row: asdict(row))
    return Leaderboard(budget, results, references, dict(ctx.prep_seconds), time.perf_counter() - started,
                       split_qrels(ctx.data, "test"), ctx.ranker_notes())


def plot_leaderboard(board: Leaderboard, measure: str = "MRR@10"):
    """Left: each strategy's score per seed (dots) and mean ± std (bar); the references as lines.
    Right: mean score against mean training CPU seconds (what each strategy costs)."""
    import matplotlib.pyplot as plt

    names = board.ranking(measure)[::-1]  # best at the top
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 1.2 + 0.42 * len(names)),
                                      gridspec_kw={"width_ratios": [3, 2]})
    for y, name in enumerate(names):
        scores = board.scores(name, measure)
        color = f"C{list(ENTRIES).index(name) % 10}"
        std = scores.std(ddof=1) if len(scores) > 1 else 0.0
        left.errorbar(scores.mean(), y, xerr=std, fmt="s", color=color, capsize=4, ms=7)
        left.scatter(scores, np.full(len(scores), y) + 0.18, color=color, s=14, alpha=0.7)
        seconds = np.mean([r.train_cpu_seconds for r in board.rows(name)])
        right.scatter(seconds, scores.mean(), color=color, s=30)
        right.annotate(_title(name), (seconds, scores.mean()), fontsize=7, xytext=(3, 3),
                       textcoords="offset points")
    for k, ref in enumerate(board.references):
        left.axvline(ref.metrics[measure], color="grey", ls=("--", ":", "-.")[k % 3], lw=1,
                     label=f"{ref.strategy} {ref.metrics[measure]:.3f}")
    left.set_yticks(range(len(names)), [_title(n) for n in names])
    left.set_xlabel(f"test {measure} (squares: mean ± std over seeds {board.seeds()}; dots: each seed)")
    left.legend(fontsize=7, loc="best")
    right.set_xlabel("training CPU seconds (mean over seeds)")
    right.set_ylabel(f"mean test {measure}")
    b = board.budget
    fig.suptitle(f"{len(board.seeds())} seeds · {b.steps} steps × batch {b.batch_size} · "
                 f"{b.max_length} tokens · {len(board.qrels)} test queries", fontsize=10)
    fig.tight_layout()
    return fig
