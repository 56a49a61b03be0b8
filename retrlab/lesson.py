"""Notebook helpers: the wording of a verdict, the runner of an experiment's variants, printed notices.

A verdict is a ``retrlab.stats.Comparison`` (paired bootstrap over queries): ``difference`` is
system A minus system B, ``significant`` whether the 95% interval excludes 0.

``Variants`` is the pattern every fine-tuning notebook (01, 02, 05, 07) repeats: train a fresh model
per variant on the same budget, record the negatives it trained on, retrieve the evaluation split
with it, and keep the run, metrics, history and wall time under the variant's name, so tables, bars
and verdicts read from one place. ``another_seed`` trains a variant again with another seed and keeps
only its run: the notebook's main comparison (``effect``) then averages each query's score over the
seeds and reports the spread between them. ``notice`` prints a "What to notice" cell's sentences as bullets.
``compare_pairs`` and ``versus`` give the pretraining bench's verdicts (notebooks 08-12).
"""
from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace

import numpy as np

from retrlab.data.dataset import RetrievalData
from retrlab.encoders import BiEncoder
from retrlab.evaluation import dense_run, encode_corpus, evaluate_run, split_qrels
from retrlab.leaderboard.board import FULL_BOARD_SEEDS, FULL_BOARD_STRATEGIES, full_board_command, stored_board
from retrlab.leaderboard.budget import FULL, LeaderboardBudget
from retrlab.leaderboard.effects import EffectRow, compute_effect, effects_markdown, measure_effect, paper_effect
from retrlab.leaderboard.entries import ENTRIES
from retrlab.negatives.uniform import RecordingSampler
from retrlab.stats import Comparison, compare_runs
from retrlab.train import History, Sampler


def verdict(comparison: Comparison, measure: str = "MRR@10") -> str:
    """'better (Δ MRR@10 +0.031, significant)', 'worse (...)' or 'within noise (Δ MRR@10 +0.004)'."""
    delta = f"Δ {measure} {comparison.difference:+.3f}" if measure else f"Δ {comparison.difference:+.3f}"
    if not comparison.significant:
        return f"within noise ({delta})"
    return f"{'better' if comparison.difference > 0 else 'worse'} ({delta}, significant)"


def direction(comparison: Comparison, up: str = "an improvement", down: str = "a drop") -> str:
    """``up`` or ``down`` when the difference is significant, else 'no difference we can tell from noise'."""
    if not comparison.significant:
        return "no difference we can tell from noise"
    return up if comparison.difference > 0 else down


def board_direction(row: EffectRow, up: str = "better", down: str = "worse") -> str:
    """``up`` or ``down`` when a full-board gap is robust (its interval excludes 0 and it exceeds the seed
    spread), else 'within noise'."""
    if not row.robust:
        return "within noise"
    return up if row.gap > 0 else down


Fit = Callable[[BiEncoder, RecordingSampler | None], History | None]  # (model, sampler) -> history


@dataclass
class Variants:
    """The variants of one experiment, by name: runs, metrics, histories, seconds, negatives trained on.

    ``train(name, model, fit, sampler)`` calls ``fit(model, recorder)`` — the notebook's own training
    call (``train``, ``train_star``, ...) — with ``sampler`` wrapped in a ``RecordingSampler`` (``None``
    when there is no sampler: in-batch negatives only), then retrieves ``split`` with the trained model.
    """
    data: RetrievalData
    split: str = "test"
    runs: dict[str, dict] = field(default_factory=dict)
    results: dict[str, dict[str, float]] = field(default_factory=dict)
    histories: dict[str, History] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)
    picks: dict[str, RecordingSampler] = field(default_factory=dict)
    vectors: dict[str, np.ndarray] = field(default_factory=dict)  # (N, H) passage vectors of the split
    seed_runs: dict[str, list[dict]] = field(default_factory=dict)  # name -> its run for each seed trained
    seed_picks: dict[str, list[RecordingSampler]] = field(default_factory=dict)  # name -> each seed's negatives

    def add(self, name: str, run: dict) -> dict[str, float]:
        """Record a run (e.g. a zero-shot baseline) and its metrics on ``split``."""
        self.runs[name] = run
        self.seed_runs[name] = [run]
        self.results[name] = evaluate_run(run, self.data, self.split)
        return self.results[name]

    def _fit(self, model: BiEncoder, fit: Fit, sampler: Sampler | None) -> tuple:
        """``fit(model, recorder)``: (its history, the recorder of its negatives or None, seconds)."""
        recorder = RecordingSampler(sampler) if sampler is not None else None
        started = time.perf_counter()
        history = fit(model, recorder)
        return history, recorder, time.perf_counter() - started

    def train(self, name: str, model: BiEncoder, fit: Fit, sampler: Sampler | None = None) -> BiEncoder:
        """Train ``model`` with ``fit``, evaluate it, record it under ``name``; print one line; return it."""
        history, recorder, self.seconds[name] = self._fit(model, fit, sampler)
        if history is not None:
            self.histories[name] = history
        if recorder is not None:
            self.picks[name] = recorder
        self.vectors[name] = encode_corpus(model, self.data, self.data.search_pids(self.split), progress=False)
        metrics = self.add(name, dense_run(model, self.data, self.split, passage_vectors=self.vectors[name],
                                           progress=False))
        self.seed_picks[name] = [recorder] if recorder is not None else []
        used = f", hidden positives among its negatives {self.fn_rate(name):.1%}" if recorder else ""
        print(f"{name}: {self.seconds[name]:.0f} s, {self.split} MRR@10 {metrics['MRR@10']:.3f}{used}")
        return model

    def another_seed(self, name: str, seed: int, model: BiEncoder, fit: Fit,
                     sampler: Sampler | None = None) -> float:
        """Train ``name`` once more (``fit`` uses ``seed``; a fresh ``model``) and keep its run beside the
        first one's; tables and plots keep showing the first run. Prints and returns its MRR@10."""
        if name not in self.runs:
            raise KeyError(f"train {name!r} first: another seed repeats a variant already trained")
        _, recorder, seconds = self._fit(model, fit, sampler)
        run = dense_run(model, self.data, self.split, progress=False)
        self.seed_runs[name].append(run)
        if recorder is not None:
            self.seed_picks[name].append(recorder)
        mrr = evaluate_run(run, self.data, self.split)["MRR@10"]
        print(f"{name}, seed {seed}: {seconds:.0f} s, {self.split} MRR@10 {mrr:.3f}")
        return mrr

    def seed_scores(self, name: str, measure: str = "MRR@10") -> np.ndarray:
        """``measure`` on ``split`` of every run of ``name``, the first run's first."""
        return np.array([evaluate_run(run, self.data, self.split)[measure] for run in self.seed_runs[name]])

    def fn_rate(self, name: str) -> float:
        """Share of the negatives ``name`` trained on that are relevant by the ground truth (nan: none);
        over every seed's negatives once ``another_seed`` has run."""
        recorders = self._recorders(name)
        if not recorders:
            return float("nan")
        return float(np.mean([r.false_negative_rate(self.data) for r in recorders]))

    def _recorders(self, name: str) -> list[RecordingSampler]:
        """Every seed's negatives of ``name`` (a variant filed under ``picks`` by hand counts once)."""
        return self.seed_picks.get(name) or ([self.picks[name]] if name in self.picks else [])

    def effect(self, method: str, a: str, b: str) -> EffectRow:
        """This notebook's row of the paper-effects table: variant ``a`` plays the leaderboard's ``method``,
        over every seed each of the two was trained with (a paired bootstrap of the seed-averaged
        per-query scores, and the spread between seeds)."""
        fn = {name: self.fn_rate(name) if self._recorders(name) else None for name in (a, b)}
        runs = {name: self.seed_runs.get(name) or [self.runs[name]] for name in (a, b)}
        return show_effect(method, runs[a], runs[b], split_qrels(self.data, self.split),
                           labels=(a, b), fn_method=fn[a], fn_baseline=fn[b])

    def compare(self, a: str, b: str, measure: str = "MRR@10") -> Comparison:
        """Paired bootstrap of variant ``a`` against variant ``b`` over the queries of ``split``."""
        return compare_runs(self.runs[a], self.runs[b], split_qrels(self.data, self.split), measure, a=a, b=b)


def show_effect(method: str, method_runs: list[dict], baseline_runs: list[dict], qrels: dict, *,
                labels: tuple[str, str], fn_method: float | None = None,
                fn_baseline: float | None = None) -> EffectRow:
    """Display (as markdown) and return the paper effect of ``method`` measured on a notebook's own runs.

    The row is the one docs/RESULTS.md tabulates for the leaderboard (``retrlab.leaderboard.effects``):
    the paper's gap, ours with its paired-bootstrap interval, the seed spread (0 with one run each)
    and the verdict with its measured reason.
    """
    from IPython.display import Markdown, display

    row = compute_effect(paper_effect(method), method_runs, baseline_runs, qrels, labels=labels,
                         fn_method=fn_method, fn_baseline=fn_baseline)
    display(Markdown(effects_markdown([row])))
    return row


def full_board(data: RetrievalData | None = None, budget: LeaderboardBudget = FULL,
               strategies: tuple[str, ...] = FULL_BOARD_STRATEGIES, seeds: tuple[int, ...] = FULL_BOARD_SEEDS):
    """The *full board* from the cache, or None (printing how to build it).

    The full board is the FULL preset (all of wiki-car, 60 steps × batch 16 from the warm-up
    retriever, τ = 0.05) for ``FULL_BOARD_STRATEGIES`` over ``FULL_BOARD_SEEDS``: the largest budget
    the project runs (docs/RESULTS.md, section 4). It takes over an hour and a half on 2 CPU cores, so
    no notebook builds it: ``FULL_BOARD_COMMAND`` does, once, caching every (strategy, seed) result,
    and this reads them (``data``: wiki-car with seed 0 when None). Nothing is trained here.
    """
    from retrlab.data import load_wikicar

    board = stored_board(data if data is not None else load_wikicar(seed=0), budget, strategies, seeds)
    if board is None:
        print("The full board is not in this cache (it is built once, in up to 2.5 hours on 2 CPU cores, by\n"
              f"    {full_board_command(strategies, seeds)}\nand read here afterwards); docs/RESULTS.md, "
              "section 4, holds the project's run.")
    return board


def show_full_board_effect(method: str, strategies: tuple[str, ...] | None = None,
                           seeds: tuple[int, ...] | None = None, *, baseline: str | None = None,
                           **where) -> EffectRow | None:
    """Display (as markdown) and return the paper effect of ``method`` on the full board, with both
    rows' mean ± std over seeds; None when they are not cached. ``baseline``: another row to measure
    ``method`` against than the paper's (AR2 against its own retriever trained without the ranker, as
    notebook 06 does); ``strategies``: the two rows by default (a reference row such as ADORE's STAR
    start comes with the board); ``seeds``: the full board's; ``where``: ``full_board``'s other
    arguments (the tests' toy data and budget)."""
    from IPython.display import Markdown, display

    effect = paper_effect(method)
    effect = replace(effect, baseline=baseline) if baseline else effect
    strategies = strategies or tuple(n for n in (method, effect.baseline) if n in ENTRIES)
    board = full_board(strategies=strategies, seeds=seeds or FULL_BOARD_SEEDS, **where)
    if board is None:
        return None
    row = measure_effect(board, effect)
    for name in (method, effect.baseline):
        scores = board.scores(name)
        if len(scores) > 1:
            spread = f"± {scores.std(ddof=1):.3f} over seeds {board.seeds()}"
        else:  # a reference row (ADORE's STAR start) is a fixed model: no training seed moves it
            spread = f"(seed {board.seeds()[0]} only)" if name in ENTRIES else "(a fixed model, evaluated once)"
        print(f"{name:>18}: test MRR@10 {scores.mean():.3f} {spread}")
    display(Markdown(effects_markdown([row])))
    return row


def seed_summary(scores: list[float] | np.ndarray, seeds: tuple[int, ...]) -> str:
    """'0.655 ± 0.007 over seeds (0, 1, 2) (0.650, 0.663, 0.652)': mean ± sample std, then each seed's value."""
    scores = np.asarray(scores, dtype=float)
    if len(scores) != len(seeds):
        raise ValueError(f"{len(scores)} scores for {len(seeds)} seeds {seeds}")
    spread = f" ± {scores.std(ddof=1):.3f}" if len(scores) > 1 else ""
    return f"{scores.mean():.3f}{spread} over seeds {seeds} ({', '.join(f'{s:.3f}' for s in scores)})"


def effect_sentence(row: EffectRow, seeds: tuple[int, ...], measure: str = "MRR@10") -> str:
    """A notebook's main comparison in one sentence: gap, 95% interval and its half-width, seed spread, verdict.
    With one run of each (``RETRLAB_SEEDS=1``) the spread is not measured, and the sentence says so."""
    spread = f"seed spread ±{row.spread:.3f}" if row.seeds > 1 else "seed spread not measured (one seed)"
    return (f"Over seeds {seeds}, {row.compared}: Δ {measure} {row.gap:+.3f}, 95% interval [{row.low:+.3f}, "
            f"{row.high:+.3f}] (half-width {(row.high - row.low) / 2:.3f}), {spread}: {row.verdict}.")


def notice(*points: str, started: float | None = None, smoke: bool | None = None) -> None:
    """Print each point as a bullet; with ``started`` (a ``time.perf_counter()``), how long the notebook ran."""
    for point in points:
        print(f"- {point}")
    if started is not None:
        print(f"\n(notebook ran in {time.perf_counter() - started:.0f} s, smoke mode: {smoke})")


# --- the pretraining bench's verdicts (notebooks 08-12) ---------------------------------------------
def compare_pairs(results: dict, qrels: dict, pairs: list[tuple[str, str]], stages: list[str],
                  measure: str = "MRR@10") -> dict[tuple[str, str, str], Comparison]:
    """Paired bootstrap of system ``a`` against ``b`` for every (a, b) pair at every stage both ran.

    ``results`` maps a name to anything with ``.runs`` (stage -> run), such as the bench's
    ``ProtocolResult``; the answer is keyed ``(stage, a, b)``, in the order stage by stage, pair by pair.
    """
    missing = sorted({name for pair in pairs for name in pair} - set(results))
    if missing:
        raise KeyError(f"no result named {missing}; the results are {sorted(results)}")
    return {(stage, a, b): compare_runs(results[a].runs[stage], results[b].runs[stage], qrels, measure, a=a, b=b)
            for stage in stages for a, b in pairs
            if stage in results[a].runs and stage in results[b].runs}


def versus(verdicts: dict[tuple[str, str, str], Comparison], stage: str, pairs: list[tuple[str, str]],
           measure: str = "MRR@10") -> str:
    """'ICT vs MLM within noise (Δ MRR@10 +0.004); ICT vs random init better (...)' for one stage."""
    return "; ".join(f"{a} vs {b} {verdict(verdicts[stage, a, b], measure)}" for a, b in pairs)
