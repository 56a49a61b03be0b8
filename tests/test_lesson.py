"""The notebooks' verdict wording, on hand-made comparisons."""
from __future__ import annotations

from retrlab.lesson import direction, verdict
from retrlab.stats import Comparison

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
