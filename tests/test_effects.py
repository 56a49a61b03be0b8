"""The paper-effects table (retrlab.leaderboard.effects) on hand-made leaderboards with exact gaps."""
from __future__ import annotations

import pytest

from retrlab.leaderboard import (EFFECTS, ENTRIES, Leaderboard, Result, compute_effect, effects_markdown,
                                 effects_table, paper_effect)
from retrlab.leaderboard.effects import PaperEffect, measure_effect
from tests.test_experiments import TOY

QIDS = ["q0", "q1", "q2", "q3"]
QRELS = {q: {"p": 1} for q in QIDS}


def result(strategy: str, seed: int, rank_of_p: int, fn_rate: float | None = None) -> Result:
    """A row whose run puts the relevant passage 'p' at ``rank_of_p`` for every query (RR = 1/rank)."""
    ranked = [f"n{i}" for i in range(rank_of_p - 1)] + ["p"]
    run = {q: {pid: 10.0 - i for i, pid in enumerate(ranked)} for q in QIDS}
    return Result(strategy, seed, {"MRR@10": 1 / rank_of_p}, run, fn_rate, 0, 1.0, 1.0, 2, "warm-up")


def board(rows: list[Result]) -> Leaderboard:
    return Leaderboard(TOY, rows, qrels=QRELS)


def test_every_effect_names_two_rows_a_leaderboard_can_hold():
    references = {"STAR (ADORE's start)"}
    for effect in EFFECTS:
        assert effect.method in ENTRIES and (effect.baseline in ENTRIES or effect.baseline in references)
        assert effect.paper_gap > 0 and effect.notebook.isdigit()


def test_a_robust_gap_with_the_papers_sign_is_reproduced_and_exact():
    effect = PaperEffect("A beats B", "star", "inbatch", +0.1, "made up", "02")
    rows = [result("star", s, 1, fn_rate=0.25) for s in (0, 1)] + [result("inbatch", s, 2) for s in (0, 1)]
    row = measure_effect(board(rows), effect)
    assert row.gap == pytest.approx(0.5) and (row.low, row.high) == pytest.approx((0.5, 0.5))
    assert row.spread == 0.0 and row.robust and row.verdict == "reproduced"
    assert row.because == "robust gap +0.500; hidden positives among the negatives: star 25%"
    assert (row.compared, row.seeds) == ("star vs inbatch", 2)


def test_a_robust_gap_on_one_seed_says_so():
    effect = PaperEffect("A beats B", "star", "inbatch", +0.1, "made up", "02")
    ahead = measure_effect(board([result("star", 0, 1), result("inbatch", 0, 2)]), effect)
    behind = measure_effect(board([result("star", 0, 4), result("inbatch", 0, 1)]), effect)
    assert (ahead.seeds, ahead.spread, ahead.robust) == (1, 0.0, True)
    assert (ahead.verdict, behind.verdict) == ("reproduced (one seed)", "opposite (one seed)")
    # three seeds against an untrained start (one run, like ADORE's STAR start): the spread is measured
    adore = PaperEffect("A improves its start", "adore", "STAR (ADORE's start)", +0.1, "made up", "04")
    start = Leaderboard(TOY, [result("adore", s, 1) for s in (0, 1, 2)], [result("STAR (ADORE's start)", None, 2)],
                        qrels=QRELS)
    row = measure_effect(start, adore)
    assert (row.seeds, row.verdict) == (3, "reproduced")


def test_a_robust_gap_the_other_way_is_opposite():
    effect = PaperEffect("A beats B", "star", "inbatch", +0.1, "made up", "02")
    rows = [result("star", s, 4) for s in (0, 1)] + [result("inbatch", s, 1) for s in (0, 1)]
    row = measure_effect(board(rows), effect)
    assert row.gap == pytest.approx(-0.75) and row.verdict == "opposite"


def test_a_gap_inside_the_seed_spread_is_not_reproduced():
    # seeds disagree: star 1/1 and 1/4 (mean 0.625, std 0.530), inbatch 1/2 twice: gap +0.125 < spread
    effect = PaperEffect("A beats B", "star", "inbatch", +0.1, "made up", "02")
    rows = [result("star", 0, 1), result("star", 1, 4), result("inbatch", 0, 2), result("inbatch", 1, 2)]
    row = measure_effect(board(rows), effect)
    assert row.gap == pytest.approx(0.125) and row.spread == pytest.approx(0.75 / 2 ** 0.5)
    assert not row.robust and row.verdict == "not reproduced" and row.because.startswith("within noise")


def test_table_skips_effects_whose_rows_are_missing_and_renders_markdown():
    rows = [result("bm25", s, 1) for s in (0, 1)] + [result("inbatch", s, 1) for s in (0, 1)]
    table = effects_table(board(rows))
    assert [r.effect.method for r in table] == ["bm25"]  # only DPR's effect has both rows
    assert table[0].gap == 0.0 and table[0].verdict == "not reproduced"
    text = effects_markdown(table)
    assert text.splitlines()[0].startswith("| effect | notebook | paper |") and "DPR Table 3" in text


def test_compute_effect_on_single_runs_as_a_notebook_calls_it():
    # one seed each: q0..q3 at rank 1 for STAR, rank 1, 1, 2, 2 for in-batch -> gap (0 + 0 + .5 + .5) / 4
    star = result("star", 0, 1).run
    inbatch = {q: result("inbatch", 0, 1 if q in ("q0", "q1") else 2).run[q] for q in QIDS}
    row = compute_effect(paper_effect("star"), [star], [inbatch], QRELS, fn_method=0.1,
                         labels=("STAR top-200", "in-batch only"))
    assert row.gap == pytest.approx(0.25) and row.spread == 0.0 and row.low >= 0.0
    assert (row.compared, row.seeds) == ("STAR top-200 vs in-batch only", 1)
    assert "| STAR top-200 vs in-batch only | +0.250 |" in effects_markdown([row])
    assert row.effect.notebook == "02" and row.half_width == pytest.approx((row.high - row.low) / 2)
    with pytest.raises(ValueError, match="no paper effect for 'dpr'; effects exist for: bm25, star"):
        paper_effect("dpr")
    with pytest.raises(ValueError, match="need at least one run of each system"):
        compute_effect(paper_effect("star"), [], [inbatch], QRELS)
