"""The notebooks' verdict wording, on hand-made comparisons."""
from __future__ import annotations

import pytest

from retrlab.lesson import compare_pairs, direction, verdict, versus
from retrlab.pretraining.bench import ProtocolResult
from retrlab.stats import Comparison, compare_runs

BETTER = Comparison("MRR@10", "a", "b", 0.531, 0.500, 0.010, 0.052)  # interval above 0
WORSE = Comparison("MRR@10", "a", "b", 0.480, 0.500, -0.035, -0.004)
NOISE = Comparison("MRR@10", "a", "b", 0.504, 0.500, -0.020, 0.029)


def test_verdict_names_the_measure_and_the_significance():
    assert verdict(BETTER) == "better (Δ MRR@10 +0.031, significant)"
    assert verdict(WORSE) == "worse (Δ MRR@10 -0.020, significant)"
    assert verdict(NOISE) == "within noise (Δ MRR@10 +0.004)"
    assert verdict(NOISE, measure="") == "within noise (Δ +0.004)"


def test_direction_words_only_a_significant_gap():
    assert direction(BETTER) == "an improvement" and direction(WORSE) == "a drop"
    assert direction(WORSE, "better", "worse") == "worse"
    assert direction(NOISE, "better", "worse") == "no difference we can tell from noise"


def _result(runs: dict) -> ProtocolResult:
    return ProtocolResult(runs=runs)


QRELS = {"q1": {"p1": 1}, "q2": {"p2": 1}, "q3": {"p3": 1}}
FIRST = {"q1": {"p1": 2.0, "x": 1.0}, "q2": {"p2": 2.0, "x": 1.0}, "q3": {"p3": 2.0, "x": 1.0}}  # every positive at rank 1
SECOND = {"q1": {"p1": 1.0, "x": 2.0}, "q2": {"p2": 1.0, "x": 2.0}, "q3": {"p3": 1.0, "x": 2.0}}  # every one at rank 2


def test_compare_pairs_bootstraps_each_pair_at_each_stage_both_ran():
    results = {"a": _result({"zero": FIRST, "tuned": FIRST}), "b": _result({"zero": SECOND})}
    verdicts = compare_pairs(results, QRELS, [("a", "b")], ["zero", "tuned"])
    assert list(verdicts) == [("zero", "a", "b")]  # "tuned": b has no run, so no comparison
    zero = verdicts["zero", "a", "b"]
    assert (zero.a, zero.b, zero.measure) == ("a", "b", "MRR@10")
    assert (zero.mean_a, zero.mean_b, zero.difference) == (1.0, 0.5, 0.5)  # RR 1 vs 1/2 on every query
    assert zero == compare_runs(FIRST, SECOND, QRELS, a="a", b="b")


def test_compare_pairs_names_a_missing_result():
    with pytest.raises(KeyError, match=r"no result named \['c'\]"):
        compare_pairs({"a": _result({})}, QRELS, [("a", "c")], ["zero"])


def test_versus_words_each_pair_of_one_stage():
    verdicts = {("zero", "a", "b"): BETTER, ("zero", "a", "c"): NOISE, ("tuned", "a", "b"): WORSE}
    assert versus(verdicts, "zero", [("a", "b"), ("a", "c")]) == (
        "a vs b better (Δ MRR@10 +0.031, significant); a vs c within noise (Δ MRR@10 +0.004)")
    assert versus(verdicts, "tuned", [("a", "b")]) == "a vs b worse (Δ MRR@10 -0.020, significant)"
