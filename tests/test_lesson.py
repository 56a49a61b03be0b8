"""The notebooks' helpers: verdict wording on hand-made comparisons, the variant runner, notices."""
from __future__ import annotations

import random
import time

import numpy as np
import pytest

from retrlab.encoders import BiEncoder
from retrlab.evaluation import dense_run, evaluate_run, split_qrels
from retrlab.leaderboard.effects import EffectRow, paper_effect
from retrlab.lesson import (Variants, board_direction, compare_pairs, direction, effect_sentence, notice,
                            seed_summary, verdict, versus)
from retrlab.negatives.uniform import RecordingSampler, uniform_from_pool
from retrlab.pretraining.bench import ProtocolResult
from retrlab.stats import Comparison, compare_runs
from retrlab.train import History
from tests.helpers import toy_pool

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


def test_board_direction_needs_the_interval_and_the_seed_spread():
    def row(gap, low, high, spread):
        robust = (low > 0 or high < 0) and abs(gap) > spread  # as compute_effect decides it
        return EffectRow(paper_effect("ar2"), "ar2 vs ar2-no-ranker", 3, gap, low, high, spread, robust, "", "")

    assert board_direction(row(-0.124, -0.150, -0.098, 0.023)) == "worse"
    assert board_direction(row(+0.030, +0.010, +0.050, 0.012), "helped", "hurt") == "helped"
    assert board_direction(row(+0.030, +0.010, +0.050, 0.040)) == "within noise"  # the seeds disagree more
    assert board_direction(row(+0.010, -0.005, +0.025, 0.004)) == "within noise"  # the interval holds 0


def test_notice_prints_bullets_and_the_running_time(capsys):
    notice("one point", "another")
    assert capsys.readouterr().out == "- one point\n- another\n"
    notice("done", started=time.perf_counter() - 3.2, smoke=True)
    assert capsys.readouterr().out == "- done\n\n(notebook ran in 3 s, smoke mode: True)\n"


@pytest.fixture(scope="module")
def tiny():
    return BiEncoder.tiny(layers=1, hidden=32, seed=0)


def test_variants_record_each_variant_and_its_negatives(toy_data, tiny, capsys):
    variants = Variants(toy_data, "test")
    expected_run = dense_run(tiny, toy_data, "test", progress=False)
    called = []

    def fit(model, sampler):  # no training: the record must equal a plain evaluation of the model
        called.append(sampler)
        picks = [sampler(q, random.Random(0)) for q in toy_data.qids("train")]
        return History([{"step": 1, "loss": float(len(picks))}])

    pool = toy_pool(toy_data)
    variants.train("uniform", tiny, fit, sampler=uniform_from_pool(pool, n=1))
    recorder = called[0]
    assert isinstance(recorder, RecordingSampler) and len(recorder.picks) == len(toy_data.qids("train"))
    hand_rate = np.mean([p in toy_data.qrels[q] for q, negs in recorder.picks for p in negs])
    assert variants.fn_rate("uniform") == hand_rate
    assert variants.runs["uniform"] == expected_run
    assert variants.results["uniform"] == evaluate_run(expected_run, toy_data, "test")
    assert variants.histories["uniform"].last("loss") == 4.0 and variants.seconds["uniform"] >= 0
    assert variants.vectors["uniform"].shape == (len(toy_data.search_pids("test")), 32)
    assert capsys.readouterr().out.startswith("uniform: ")

    variants.train("in-batch", tiny, lambda model, sampler: called.append(sampler))
    assert called[1] is None and np.isnan(variants.fn_rate("in-batch")) and "in-batch" not in variants.histories
    assert "hidden positives" not in capsys.readouterr().out


def test_variants_compare_is_the_paired_bootstrap_of_their_runs(toy_data):
    variants = Variants(toy_data, "test")
    good = {"q4": {"s3": 2.0, "s1": 1.0}, "q5": {"s1": 2.0, "s3": 1.0}}  # hand-made runs on the test split
    bad = {"q4": {"s1": 2.0, "s3": 1.0}, "q5": {"s3": 2.0, "s1": 1.0}}  # each query's relevant one ranked 2nd
    variants.add("good", good)
    variants.add("bad", bad)
    qrels = split_qrels(toy_data, "test")
    assert variants.compare("good", "bad") == compare_runs(good, bad, qrels, "MRR@10", a="good", b="bad")
    assert variants.results["good"]["MRR@10"] == 1.0 and variants.results["bad"]["MRR@10"] == 0.5


def test_variants_effect_is_the_papers_row_on_their_runs(toy_data, monkeypatch):
    variants = Variants(toy_data, "test")
    variants.add("STAR", {"q4": {"s3": 2.0, "s1": 1.0}, "q5": {"s1": 2.0, "s3": 1.0}})  # RR 1, 1
    variants.add("in-batch", {"q4": {"s1": 2.0, "s3": 1.0}, "q5": {"s3": 2.0, "s1": 1.0}})  # RR 0.5, 0.5
    row = variants.effect("star", "STAR", "in-batch")
    assert row.gap == 0.5 and (row.low, row.high) == (0.5, 0.5) and row.seeds == 1 and row.spread == 0.0
    assert row.verdict == "reproduced (one seed)" and row.compared == "STAR vs in-batch" and row.effect.notebook == "02"
    shown = []
    monkeypatch.setattr("IPython.display.display", lambda obj: shown.append(obj.data))
    variants.effect("star", "STAR", "in-batch")
    assert "| STAR vs in-batch | +0.500 | [+0.500, +0.500] | 1, ±0.000 | reproduced (one seed): robust gap" in shown[0]
def test_another_seed_adds_runs_that_the_effect_averages_and_the_spread_measures(toy_data, monkeypatch):
    monkeypatch.setattr("IPython.display.display", lambda obj: None)
    variants = Variants(toy_data, "test")
    pool = toy_pool(toy_data)
    models = {s: BiEncoder.tiny(layers=1, hidden=32, seed=s) for s in (0, 1, 2)}

    def fit(model, sampler):  # draws each training query's negative, as a training run would
        for q in toy_data.qids("train"):
            sampler(q, random.Random(0))

    variants.add("in-batch", {"q4": {"s1": 2.0, "s3": 1.0}, "q5": {"s3": 2.0, "s1": 1.0}})  # RR 0.5, 0.5
    with pytest.raises(KeyError, match="train 'hard' first"):
        variants.another_seed("hard", 1, models[1], fit)
    variants.train("hard", models[0], fit, sampler=uniform_from_pool(pool, n=1))
    first = variants.runs["hard"]
    mrr = {s: variants.another_seed("hard", s, models[s], fit, sampler=uniform_from_pool(pool, n=1)) for s in (1, 2)}
    runs = [dense_run(models[s], toy_data, "test", progress=False) for s in (0, 1, 2)]
    assert variants.seed_runs["hard"] == runs and variants.runs["hard"] == first  # the tables keep seed 0's run
    scores = [evaluate_run(r, toy_data, "test")["MRR@10"] for r in runs]
    assert variants.seed_scores("hard").tolist() == scores and [mrr[1], mrr[2]] == scores[1:]
    rates = [r.false_negative_rate(toy_data) for r in variants.seed_picks["hard"]]
    assert len(rates) == 3 and variants.fn_rate("hard") == pytest.approx(np.mean(rates))

    row = variants.effect("star", "hard", "in-batch")
    assert row.seeds == 3 and row.spread == pytest.approx(np.std(scores, ddof=1))  # in-batch: one run, no spread
    assert row.gap == pytest.approx(np.mean(scores) - 0.5)  # seed-averaged per-query RR, minus 0.5 on each query


def test_a_variant_filed_by_hand_counts_as_one_seed(toy_data, monkeypatch):
    """Notebook 05 files a stage that adds nothing under the previous stage's run and negatives."""
    monkeypatch.setattr("IPython.display.display", lambda obj: None)
    variants = Variants(toy_data, "test")
    recorder = RecordingSampler(uniform_from_pool(toy_pool(toy_data), n=1))
    for q in toy_data.qids("train"):
        recorder(q, random.Random(0))
    variants.runs["alias"], variants.picks["alias"] = {"q4": {"s3": 2.0}, "q5": {"s1": 2.0}}, recorder  # RR 1, 1
    variants.add("base", {"q4": {"s1": 2.0, "s3": 1.0}, "q5": {"s3": 2.0, "s1": 1.0}})  # RR 0.5, 0.5
    assert variants.fn_rate("alias") == recorder.false_negative_rate(toy_data)
    row = variants.effect("star", "alias", "base")
    assert row.seeds == 1 and row.gap == 0.5


def test_seed_summary_gives_mean_sample_std_and_each_seed():
    assert seed_summary([0.650, 0.663, 0.652], (0, 1, 2)) == "0.655 ± 0.007 over seeds (0, 1, 2) (0.650, 0.663, 0.652)"
    assert seed_summary([0.5], (0,)) == "0.500 over seeds (0,) (0.500)"
    with pytest.raises(ValueError, match=r"2 scores for 3 seeds \(0, 1, 2\)"):
        seed_summary([0.5, 0.6], (0, 1, 2))


def test_effect_sentence_states_gap_interval_half_width_spread_and_verdict():
    row = EffectRow(paper_effect("simans"), "SimANS vs top-1", 3, 0.0123, -0.0101, 0.0299, 0.004, False,
                    "not reproduced", "")
    assert effect_sentence(row, (0, 1, 2)) == ("Over seeds (0, 1, 2), SimANS vs top-1: Δ MRR@10 +0.012, 95% interval "
                                               "[-0.010, +0.030] (half-width 0.020), seed spread ±0.004: not reproduced.")
    assert "Δ dev MRR@10 +0.012" in effect_sentence(row, (0,), "dev MRR@10")
    one = EffectRow(paper_effect("simans"), "SimANS vs top-1", 1, 0.0123, -0.0101, 0.0299, 0.0, False, "not reproduced", "")
    assert effect_sentence(one, (0,)).endswith("(half-width 0.020), seed spread not measured (one seed): not reproduced.")


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
