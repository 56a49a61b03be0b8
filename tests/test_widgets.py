"""Widget state without a browser: build, move controls, check the exposed results and the figure."""
from __future__ import annotations

import math
import random

import numpy as np
import pytest

from retrlab.negatives.simans import simans_logits, simans_weights
from retrlab.pool import CandidatePool
from retrlab.train import History
from retrlab.viz.explore import (Settings, ambiguous_band, explore_query, pick_false_negative_rates, rule_strategies,
                                 score_margins, zone_counts, zone_of)
from retrlab.viz.widgets import DistributionView, SimilarityExplorer, TrainingBoard
from test_simans import POSITIVE, SCORES, hand_pool


def test_explore_query_picks_and_probabilities(toy_data):
    view = explore_query(hand_pool(), toy_data, "q0", Settings(a=10, b=0.0, depth=5, n=2, absolute_margin=0.1))
    assert view.picks["top-k"] == ["c2", "c4"] and view.false_negatives("top-k") == 1
    assert view.picks["margin"] == ["c3", "r1"]  # 0.80 and 0.70 are within 0.1 of the positive's 0.75
    np.testing.assert_allclose(view.probabilities["SimANS"], simans_weights(SCORES, POSITIVE, 10), rtol=1e-5)
    np.testing.assert_allclose(view.probabilities["uniform"], [0.4] * 5)
    assert view.probabilities["margin"].tolist() == [0, 0, 1, 1, 0]
    assert view.picks["SimANS"] == rule_strategies(hand_pool(), Settings(a=10, depth=5, n=2))["SimANS"]("q0", random.Random(0))
    assert view.kinds == ["hidden positive", "negative", "hidden positive", "negative", "negative"]
    with pytest.raises(ValueError, match="n must be between"):
        Settings(depth=2, n=3)


def test_false_negative_rates_and_margins_by_hand():
    pool = hand_pool()
    rates = pick_false_negative_rates(pool, rule_strategies(pool, Settings(depth=5, n=1, absolute_margin=0.1)))
    # top-1: q0 -> c2 (hidden), q1 -> c1 (not hidden in this hand pool): 1 of 2
    assert rates["top-k"] == 0.5
    # margin 0.1: q0 -> c3 (hidden); q1's candidates all score above 0.2 - 0.1, none kept: 1 of 1
    assert rates["margin"] == 1.0
    margins = score_margins(pool, depth=5)
    np.testing.assert_allclose(np.sort(margins["hidden positive"]), [-0.15, 0.05], atol=1e-6)
    assert len(margins["negative"]) == 6


def test_explorer_sliders_change_result_and_figure(toy_data):
    ex = SimilarityExplorer(hand_pool(), toy_data, settings=Settings(a=10, depth=5, n=2))
    weights, png, curve = ex.weights.copy(), ex.png, ex.kernel_line.get_ydata().copy()
    assert ex.qid == "q0" and ex.selected["top-k"] == ["c2", "c4"] and png.startswith(b"\x89PNG")
    ex.a.value = 200.0  # what a slider move does
    assert not np.allclose(ex.weights, weights)
    np.testing.assert_allclose(ex.weights, simans_weights(SCORES, POSITIVE, 200.0), rtol=1e-5)
    assert ex.png != png and not np.allclose(ex.kernel_line.get_ydata(), curve)
    ex.set(n=1, depth=3)
    assert ex.selected["top-k"] == ["c2"] and len(ex.weights) == 3
    assert "c2" in ex.table.value and "hidden positive" in ex.table.value
    ex.set(qid="q1")
    assert ex.result.positive_rank == 0 and ex.selected["SimANS"] == ["r1"]  # fallback: the lowest-ranked
    renders = ex.renders
    with pytest.raises(KeyError, match="nope"):
        ex.set(qid="nope")
    with pytest.raises(ValueError, match=r"a=1000000.0 is outside the slider's range \[0.0, 500.0\]"):
        ex.set(a=1e6)
    with pytest.raises(ValueError, match="unknown control"):
        ex.set(tau=1.0)
    assert ex.renders == renders  # a rejected change redraws nothing


def test_explorer_cross_encoder_overlay_appears_only_with_probabilities(toy_data):
    pool = hand_pool()
    plain = SimilarityExplorer(pool, toy_data)
    assert "cross-encoder" not in plain.selected and plain.threshold not in plain.children[1].children
    probs = {"q0": np.array([0.95, 0.2, 0.7, 0.1, 0.05]), "q1": np.array([0.1, 0.1, 0.1])}
    ex = SimilarityExplorer(pool, toy_data, settings=Settings(n=2, depth=5), ce_probabilities=probs)
    assert ex.threshold in ex.children[1].children
    ex.set(ce_threshold=0.5)
    assert ex.selected["cross-encoder"] == ["c4", "r1"]
    ex.set(ce_threshold=0.8)
    assert ex.selected["cross-encoder"] == ["c4", "c3"]


def test_distribution_view_rates_follow_the_sliders():
    view = DistributionView(hand_pool(), Settings(a=10, depth=5, n=1))
    assert view.rates["top-k"] == 0.5 and set(view.rates) == {"top-k", "uniform", "SimANS", "margin"}
    png, y = view.png, view.kernel_y.copy()
    view.set(b=-0.3, a=400)
    assert view.png != png and not np.allclose(view.kernel_y, y)
    assert view.kernel_x[np.argmax(view.kernel_y)] == pytest.approx(-0.3, abs=0.01)
    with pytest.raises(ValueError, match="depth=0 is outside"):
        view.set(depth=0)


def test_training_board_is_a_hook_that_logs_and_redraws():
    calls = []
    board = TrainingBoard(evaluate=lambda step, model: calls.append(step) or {"MRR@10": 0.1 * step})
    hook = board.hook(2)
    for step in range(1, 5):
        board.history.log(step, loss=1.0 / step)  # what train() logs before running hooks
        if hook.due(step, 4):
            assert hook.fn(step, None) == {"MRR@10": pytest.approx(0.1 * step)}
    assert calls == [2, 4] and board.history.series("MRR@10") == ([2, 4], [pytest.approx(0.2), pytest.approx(0.4)])
    assert board.renders == 3 and "step 4" in board.caption
    assert board.figure.axes[1].lines[0].get_ydata().tolist() == pytest.approx([0.2, 0.4])
    with pytest.raises(ValueError, match="every"):
        board.hook(0)
    assert isinstance(TrainingBoard(history=History()).history, History)


# --- zones, counts vs density, pools, the cross-encoder's veto, fallback, presenter size, board cadence ---

def other_pool() -> CandidatePool:
    """hand_pool's queries after "training": q0's hidden positives moved up, its negatives down."""
    return CandidatePool("after", ["q0", "q1"], [["c2", "c3", "c4", "r1", "r3"], ["c1", "c2", "r1"]],
                         [np.array([0.9, 0.85, 0.4, 0.3, 0.1], dtype=np.float32),
                          np.array([0.5, 0.4, 0.3], dtype=np.float32)],
                         [np.array([True, True, False, False, False]), np.array([False, False, False])],
                         np.array([0.75, 0.2], dtype=np.float32), np.array([1, 0]))


def test_ambiguous_band_is_where_the_kernel_is_above_half_its_peak():
    width = math.sqrt(math.log(2) / 100)  # -100·w² = log(1/2)
    assert ambiguous_band(100, 0.05, "gaussian") == pytest.approx((0.05 - width, 0.05 + width))
    assert ambiguous_band(100, 0.05, "gaussian-code") == pytest.approx((-0.05 - width, -0.05 + width))
    assert ambiguous_band(10, 0.0, "laplace") == pytest.approx((-math.log(2) / 10, math.log(2) / 10))
    for kernel in ("gaussian", "gaussian-code", "laplace"):  # the edges sit at half the peak of the package's kernel
        low, high = ambiguous_band(40, 0.1, kernel)
        np.testing.assert_allclose(simans_logits(np.array([low, high]), 0.0, 40, 0.1, kernel), [math.log(0.5)] * 2)
    assert ambiguous_band(0, 0.1) == (-math.inf, math.inf)  # a flat kernel: every candidate is ambiguous
    with pytest.raises(ValueError, match="fraction"):
        ambiguous_band(10, 0, fraction=1.0)
    with pytest.raises(ValueError, match="unknown kernel"):
        ambiguous_band(10, 0, kernel="box")


def test_zone_counts_on_hand_made_gaps():
    assert zone_of(np.array([-0.1, 0.1, -0.1001, 0.1001, 0.0]), (-0.1, 0.1)).tolist() == [1, 1, 0, 2, 1]
    margins = score_margins(hand_pool(), depth=5)  # q0: +.05 h, -.05, -.15 h, -.45, -.65; q1: +.3, +.2, +.1
    counts = zone_counts(margins, ambiguous_band(100, 0.0))  # band ±0.083
    assert counts == {"too easy": {"hidden positive": 1, "negative": 2},
                      "ambiguous": {"hidden positive": 1, "negative": 1},
                      "too hard": {"hidden positive": 0, "negative": 3}}


def test_distribution_view_zones_follow_a_b_kernel():
    view = DistributionView(hand_pool(), Settings(a=100, b=0.0, depth=5, n=1))
    assert view.zone_counts["ambiguous"] == {"hidden positive": 1, "negative": 1}
    assert "<td class='zone-too-hard'>3</td>" in view.zones.value
    spans = [p for p in view.figure.axes[0].patches if p.get_zorder() == 0]
    assert len(spans) == 3  # the three zones are shaded
    view.set(b=-0.15)  # band [-0.233, -0.067]: q0's +0.05 and -0.05 become "too hard"
    assert view.zone_counts == {"too easy": {"hidden positive": 0, "negative": 2},
                                "ambiguous": {"hidden positive": 1, "negative": 0},
                                "too hard": {"hidden positive": 1, "negative": 4}}
    view.set(kernel="gaussian-code")  # the released code's sign: the band moves to [+0.067, +0.233]
    assert view.band == pytest.approx(ambiguous_band(100, 0.15))
    assert view.zone_counts == {"too easy": {"hidden positive": 2, "negative": 3},  # all of q0
                                "ambiguous": {"hidden positive": 0, "negative": 2},  # q1's +0.2, +0.1
                                "too hard": {"hidden positive": 0, "negative": 1}}  # q1's +0.3
    assert "too hard 0/1" in view.caption


def test_distribution_view_counts_versus_density():
    view = DistributionView(hand_pool(), Settings(a=10, depth=5, n=1))
    assert view.histogram.value == "density" and view.figure.axes[0].get_ylabel() == "density"
    view.set(histogram="counts")
    ax = view.figure.axes[0]
    heights = {}
    for bar in ax.patches:
        if bar.get_zorder() != 0:  # skip the zones' spans
            heights.setdefault(bar.get_facecolor()[:3], []).append(bar.get_height())
    assert ax.get_ylabel() == "candidates" and sorted(sum(h) for h in heights.values()) == [2, 6]
    with pytest.raises(ValueError, match="not one of the choices"):
        view.set(histogram="log")


def test_distribution_view_switches_between_pools():
    view = DistributionView({"zero-shot": hand_pool(), "after": other_pool()}, Settings(a=100, depth=5, n=1))
    assert view.pool_choice in view.children[1].children and view.pool.source == "hand"
    before = view.zone_counts
    view.set(pool="after")
    assert view.pool.source == "after" and "after" in view.caption
    # q0 after: +.15 h, +.10 h, -.35, -.45, -.65 -> both hidden positives "too hard"
    assert view.zone_counts["too hard"] == {"hidden positive": 2, "negative": 3} != before["too hard"]
    assert view.rates["top-k"] == 0.5  # top-1: q0 -> c2 (hidden), q1 -> c1
    single = DistributionView(hand_pool())
    assert single.pool_choice not in single.children[1].children
    with pytest.raises(ValueError, match="empty dict"):
        DistributionView({})


def test_explorer_zone_counts_follow_the_sliders(toy_data):
    ex = SimilarityExplorer(hand_pool(), toy_data, settings=Settings(a=100, depth=5, n=2))
    assert ex.zone_counts == {"too easy": {"hidden positive": 1, "negative": 2},
                              "ambiguous": {"hidden positive": 1, "negative": 1},
                              "too hard": {"hidden positive": 0, "negative": 0}}
    ex.set(b=-0.15, depth=3)  # q0's top-3: +.05 h, -.05 (too hard), -.15 h (ambiguous)
    assert ex.zone_counts == {"too easy": {"hidden positive": 0, "negative": 0},
                              "ambiguous": {"hidden positive": 1, "negative": 0},
                              "too hard": {"hidden positive": 1, "negative": 1}}
    assert "ambiguous 1/0" in ex.caption and "zone-too-hard" in ex.zones.value


def test_explorer_cross_encoder_row_is_the_denoiser_threshold(toy_data):
    probs = {"q0": np.array([0.95, 0.2, 0.7, 0.1, 0.05]), "q1": np.array([0.1, 0.1, 0.1])}
    ex = SimilarityExplorer(hand_pool(), toy_data, settings=Settings(n=2, depth=5), ce_probabilities=probs)
    for threshold in (0.05, 0.5, 0.7, 0.8, 1.0):
        ex.set(ce_threshold=threshold)
        kept = probs["q0"] < threshold  # RocketQA: a negative only if p < threshold (0.7 drops p = 0.7)
        assert ex.result.kept["cross-encoder"].tolist() == kept.tolist()
        hidden = ex.result.hidden
        assert ex.veto == {"scored": 5, "dropped": int((~kept).sum()), "hidden": 2,
                           "caught": int((~kept & hidden).sum())}
        assert ex.selected["cross-encoder"] == [p for p, k in zip(ex.result.pids, kept) if k][:2]
    ex.set(ce_threshold=0.7)
    assert ex.selected["cross-encoder"] == ["c4", "r1"] and "catches 2 of 2 hidden positives" in ex.caption
    ex.set(ce_threshold=0.8)
    assert ex.veto["caught"] == 1 and "drops 1, 1/2 hidden" in ex._row_label("cross-encoder")


def test_explorer_cross_encoder_scores_may_cover_only_the_top_candidates(toy_data):
    probs = {"q0": np.array([0.95, 0.2, 0.01]), "q1": np.array([0.1])}  # only the top-3 / top-1 were scored
    ex = SimilarityExplorer(hand_pool(), toy_data, settings=Settings(n=3, depth=5, ce_threshold=0.5),
                            ce_probabilities=probs)
    assert ex.selected["cross-encoder"] == ["c4", "c3"]  # unscored r1, r3 are never picked
    assert ex.veto == {"scored": 3, "dropped": 1, "hidden": 2, "caught": 1}
    assert "<th>CE p</th>" in ex.table.value and ex.table.value.count("<td>–</td>") == 2  # r1, r3 unscored
    with pytest.raises(ValueError, match="first 1..5 pool candidates"):
        SimilarityExplorer(hand_pool(), toy_data, ce_probabilities={"q0": np.zeros(6), "q1": np.zeros(1)})


def test_explorer_marker_sizes_show_the_fallback_when_the_positive_was_not_retrieved(toy_data):
    ex = SimilarityExplorer(hand_pool(), toy_data, settings=Settings(a=10, depth=3, n=2))
    ex.set(qid="q1")  # q1's positive was not retrieved: SimANS takes the 2 lowest-ranked
    assert ex.selected["SimANS"] == ["r1", "c2"]
    assert ex.weights.tolist() == [0.0, 1.0, 1.0]  # sizes follow what is picked, not the kernel
    ex.set(qid="q0")
    np.testing.assert_allclose(ex.weights, simans_weights(SCORES[:3], POSITIVE, 10), rtol=1e-5)


def png_width(png: bytes) -> int:
    return int.from_bytes(png[16:20], "big")  # the IHDR chunk's width field


def test_presenter_size_draws_larger_figures(toy_data):
    normal = SimilarityExplorer(hand_pool(), toy_data)
    big = SimilarityExplorer(hand_pool(), toy_data, size="presenter")
    assert png_width(big.png) == pytest.approx(1.5 * png_width(normal.png), abs=2)
    assert png_width(DistributionView(hand_pool(), size="presenter").png) == pytest.approx(1.5 * 11 * 80, abs=2)
    with pytest.raises(ValueError, match="size must be one of"):
        TrainingBoard(size="huge")


def test_training_board_redraws_every_tenth_and_evaluates_twice():
    calls = []
    board = TrainingBoard(evaluate=lambda step, model: calls.append(step) or {"MRR@10": 0.5})
    hook = board.hook_for(28)
    for step in range(1, 29):
        board.history.log(step, loss=1.0)
        if hook.due(step, 28):
            hook.fn(step, None)
    assert hook.every == 2 and board.renders == 1 + 14  # at least every 10% of 28 steps
    assert calls == [14, 28]
    assert TrainingBoard().hook_for(5).every == 1 and TrainingBoard().hook_for(100).every == 10
    with pytest.raises(ValueError, match="evaluate_every"):
        board.hook(1, evaluate_every=0)
