"""The paper-effects table: each effect a paper reports, measured as a gap between two leaderboard rows.

A paper effect is a claim of the form "method beats baseline by so much" (DPR's BM25 negative over
in-batch, STAR over in-batch, ANCE's refresh over static BM25 negatives, ADORE over its STAR start,
RocketQA's denoising, AR2 over ANCE, SimANS over plain top-k sampling). On a leaderboard run the
same pair is two rows, so the effect becomes our gap with its noise:

* **gap** — method minus baseline, test MRR@10, each averaged over the run's seeds;
* **95% CI** — paired bootstrap over test queries (``Leaderboard.compare``);
* **seed spread** — the two rows' standard deviations over seeds, added;
* **verdict** — ``reproduced`` (robust gap with the paper's sign), ``opposite`` (robust gap with the
  other sign) or ``not reproduced`` (within noise), and the measured quantity that explains it:
  the noise itself, or how many hidden positives the method's negatives held. With one seed a robust
  gap reads ``reproduced (one seed)`` or ``opposite (one seed)``: the bootstrap says the gap is not
  query noise, but the seed spread — on the full board as large as many gaps — was not measured.

The paper gaps are MS MARCO passage dev MRR@10 (DPR's is NQ top-20 accuracy), from the tables named
in ``source``; docs/methods.md gives each method's numbers.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from retrlab.leaderboard.board import Leaderboard
from retrlab.stats import compare_seeds


@dataclass(frozen=True)
class PaperEffect:
    name: str  # the effect, in words
    method: str  # leaderboard strategy
    baseline: str  # leaderboard strategy or reference row
    paper_gap: float  # what the paper reports for method - baseline
    source: str  # where the paper reports it
    notebook: str  # the notebook that teaches it


EFFECTS: tuple[PaperEffect, ...] = (
    PaperEffect("DPR: one BM25 hard negative beats in-batch only", "bm25", "inbatch", +5.0,
                "DPR Table 3, NQ dev top-20 73.0 -> 78.0 (accuracy points)", "01"),
    PaperEffect("STAR: static hard + random negatives beat in-batch only", "star", "inbatch", +0.076,
                "STAR README, MRR@10 0.264 -> 0.340", "02"),
    PaperEffect("ANCE: refreshed negatives beat static BM25 negatives", "ance", "bm25", +0.031,
                "ANCE Table 1, MRR@10 0.299 -> 0.330", "03"),
    PaperEffect("ADORE: live top-k on the query tower improves its STAR start", "adore", "STAR (ADORE's start)",
                +0.007, "ADORE README, MRR@10 0.340 -> 0.347", "04"),
    PaperEffect("RocketQA: denoised hard negatives beat un-denoised ones", "rocketqa-denoised", "rocketqa-hard",
                +0.104, "RocketQA README, MRR@10 0.260 -> 0.364", "05"),
    PaperEffect("AR2: the adversarial ranker game beats ANCE", "ar2", "ance", +0.065,
                "AR2 Table 2, MRR@10 0.330 -> 0.395 (AR2 starts from coCondenser)", "06"),
    PaperEffect("SimANS: ambiguous negatives beat top-k negatives", "simans", "topk", +0.014,
                "SimANS main table, AR2 0.395 -> AR2+SimANS 0.409", "07"),
)


@dataclass(frozen=True)
class EffectRow:
    effect: PaperEffect
    compared: str  # "method vs baseline", as run
    seeds: int  # runs per system
    gap: float  # ours: method - baseline, test MRR@10 averaged over seeds
    low: float  # paired-bootstrap 95% interval of the gap
    high: float
    spread: float  # the two rows' seed standard deviations, added (0 for a single seed)
    robust: bool  # interval excludes 0 and |gap| > spread
    verdict: str  # "reproduced", "opposite" or "not reproduced"; a robust gap on one seed adds " (one seed)"
    because: str  # the measured reason

    @property
    def half_width(self) -> float:
        return (self.high - self.low) / 2


def paper_effect(method: str) -> PaperEffect:
    """The effect whose method is the leaderboard strategy ``method`` (e.g. ``"star"``)."""
    for effect in EFFECTS:
        if effect.method == method:
            return effect
    raise ValueError(f"no paper effect for {method!r}; effects exist for: {', '.join(e.method for e in EFFECTS)}")


def _reason(gap: float, low: float, high: float, spread: float, robust: bool,
            fn_rates: dict[str, float | None]) -> str:
    if not robust:
        return f"within noise at this budget (CI [{low:+.3f}, {high:+.3f}], seed spread ±{spread:.3f})"
    shares = ", ".join(f"{name} {share:.0%}" for name, share in fn_rates.items() if share is not None)
    return f"robust gap {gap:+.3f}" + (f"; hidden positives among the negatives: {shares}" if shares else "")


def compute_effect(effect: PaperEffect, method_runs: list[dict], baseline_runs: list[dict], qrels: dict, *,
                   fn_method: float | None = None, fn_baseline: float | None = None,
                   labels: tuple[str, str] | None = None, measure: str = "MRR@10") -> EffectRow:
    """One effect from the two systems' runs, one run per seed (``{qid: {pid: score}}``), graded on ``qrels``.

    ``labels`` names the two systems actually compared when they are a notebook's own variants
    (default: the effect's leaderboard rows).

    The gap and its interval use the per-query scores averaged over seeds (paired bootstrap over
    queries); the spread adds the two systems' standard deviations over seeds. ``fn_*`` are the
    shares of hidden positives among the negatives each trained on, quoted as the reason of a robust gap.
    A robust gap reads "(one seed)" only when both systems ran once: one run beside several is a fixed
    reference model (ADORE's STAR start), which no training seed moves.
    """
    if not method_runs or not baseline_runs:
        raise ValueError(f"{effect.name}: need at least one run of each system")
    a, b = labels or (effect.method, effect.baseline)
    comparison, spread = compare_seeds(method_runs, baseline_runs, qrels, measure, a=a, b=b)
    gap = comparison.difference
    robust = comparison.robust(spread)
    seeds = max(len(method_runs), len(baseline_runs))
    verdict = "not reproduced" if not robust else ("reproduced" if gap * effect.paper_gap > 0 else "opposite")
    if robust and seeds < 2:
        verdict += " (one seed)"  # the seed spread, unmeasured, may be as large as the gap
    reason = _reason(gap, comparison.low, comparison.high, spread, robust, {a: fn_method, b: fn_baseline})
    return EffectRow(effect, f"{a} vs {b}", seeds, gap, comparison.low, comparison.high, spread, robust, verdict,
                     reason)


def _fn_rate(board: Leaderboard, name: str) -> float | None:
    """Mean share of hidden positives among the negatives ``name`` trained on (None: no extra negatives)."""
    rates = [r.fn_rate for r in board.rows(name) if r.fn_rate is not None]
    return float(np.mean(rates)) if rates else None


def measure_effect(board: Leaderboard, effect: PaperEffect, measure: str = "MRR@10") -> EffectRow:
    """One effect on one leaderboard: its two rows' runs over every seed, through ``compute_effect``."""
    method_runs, baseline_runs = ([r.run for r in board.rows(n)] for n in (effect.method, effect.baseline))
    return compute_effect(effect, method_runs, baseline_runs, board.qrels,
                          fn_method=_fn_rate(board, effect.method), fn_baseline=_fn_rate(board, effect.baseline),
                          measure=measure)


def effects_table(board: Leaderboard, effects: tuple[PaperEffect, ...] = EFFECTS,
                  measure: str = "MRR@10") -> list[EffectRow]:
    """Every effect whose two rows the board holds (an effect with a missing row is skipped)."""
    held = set(board.strategies()) | {r.strategy for r in board.references}
    return [measure_effect(board, e, measure) for e in effects if {e.method, e.baseline} <= held]


def effects_markdown(rows: list[EffectRow]) -> str:
    """The table as markdown: effect, paper gap, our gap with CI and seed spread, verdict and reason."""
    lines = ["| effect | notebook | paper | compared here | ours (Δ MRR@10) | 95% CI | seeds, spread | verdict |",
             "| --- | --- | --- | --- | ---: | --- | --- | --- |"]
    for r in rows:
        e = r.effect
        lines.append(f"| {e.name} | {e.notebook} | {e.paper_gap:+g} ({e.source}) | {r.compared} | {r.gap:+.3f} | "
                     f"[{r.low:+.3f}, {r.high:+.3f}] | {r.seeds}, ±{r.spread:.3f} | {r.verdict}: {r.because} |")
    return "\n".join(lines)
