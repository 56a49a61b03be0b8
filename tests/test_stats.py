import pytest

from retrlab.stats import Comparison, compare_runs, compare_seeds, mean_std, paired_bootstrap


def test_identical_systems_are_within_noise():
    values = {f"q{i}": i / 10 for i in range(10)}
    c = paired_bootstrap(values, values, a="x", b="y", measure="MRR@10")
    assert c.difference == 0 and (c.low, c.high) == (0, 0)
    assert not c.significant and c.verdict().startswith("x and y are within noise")


def test_a_consistent_gap_is_significant():
    a = {f"q{i}": 0.9 for i in range(50)}
    b = {f"q{i}": 0.5 + 0.01 * (i % 3) for i in range(50)}
    c = paired_bootstrap(a, b, a="new", b="old")
    assert c.significant and c.low > 0.37 and c.verdict().startswith("new beats old")


def test_compare_runs_uses_per_query_metrics():
    qrels = {"q1": {"d1": 1}, "q2": {"d2": 1}}
    good = {"q1": {"d1": 2.0, "x": 1.0}, "q2": {"d2": 2.0, "x": 1.0}}
    bad = {"q1": {"d1": 1.0, "x": 2.0}, "q2": {"d2": 1.0, "x": 2.0}}
    c = compare_runs(good, bad, qrels, "MRR@10")
    assert (c.mean_a, c.mean_b) == (1.0, 0.5)


def test_compare_seeds_bootstraps_seed_averaged_queries_and_adds_the_seed_spreads():
    qrels = {"q1": {"d1": 1}, "q2": {"d2": 1}}
    first = {"q1": {"d1": 2.0, "x": 1.0}, "q2": {"d2": 2.0, "x": 1.0}}  # RR 1, 1
    q1_second = {"q1": {"d1": 1.0, "x": 2.0}, "q2": {"d2": 2.0, "x": 1.0}}  # RR 0.5, 1
    second = {"q1": {"d1": 1.0, "x": 2.0}, "q2": {"d2": 1.0, "x": 2.0}}  # RR 0.5, 0.5
    comparison, spread = compare_seeds([first, q1_second], [second], qrels, a="new", b="old")
    # new, averaged over its 2 seeds: q1 0.75, q2 1.0; old (one run): 0.5, 0.5 -> gaps 0.25 and 0.5
    assert (comparison.a, comparison.b, comparison.mean_a, comparison.mean_b) == ("new", "old", 0.875, 0.5)
    assert comparison.difference == pytest.approx(0.375) and (comparison.low, comparison.high) == (0.25, 0.5)
    assert spread == pytest.approx(0.1767767, abs=1e-6)  # std(1.0, 0.75) with ddof 1; old ran once: 0
    assert compare_seeds([first], [second], qrels)[0] == compare_runs(first, second, qrels)
    with pytest.raises(ValueError, match="at least one run of each"):
        compare_seeds([], [second], qrels)


def test_no_shared_query():
    with pytest.raises(ValueError, match="share no query"):
        paired_bootstrap({"a": 1.0}, {"b": 1.0})


def test_mean_std():
    assert mean_std([0.5]) == "0.500"
    assert mean_std([0.5, 0.7]) == "0.600 ± 0.141"


def test_verdict_names_the_winner_first_with_its_own_numbers():
    a = {f"q{i}": 0.2 for i in range(30)}
    b = {f"q{i}": 0.6 for i in range(30)}
    text = paired_bootstrap(a, b, a="old", b="new", measure="MRR@10").verdict()
    assert text == "new beats old: MRR@10 0.600 vs 0.200 (Δ = +0.400, 95% CI [+0.400, +0.400])"


def test_robust_needs_significance_and_a_gap_beyond_the_seed_spread():
    sure = Comparison("MRR@10", "A", "B", mean_a=0.6, mean_b=0.5, low=0.05, high=0.15)  # Δ +0.1, significant
    assert sure.robust(0.09) and not sure.robust(0.1) and not sure.robust(0.2)
    unsure = Comparison("MRR@10", "A", "B", mean_a=0.6, mean_b=0.5, low=-0.01, high=0.2)
    assert not unsure.robust(0.0)
