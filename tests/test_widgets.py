"""Widget state without a browser: build, move controls, check the exposed results and the figure."""
from __future__ import annotations

import random

import numpy as np
import pytest

from retrlab.negatives.simans import simans_weights
from retrlab.train import History
from retrlab.viz.explore import Settings, explore_query, pick_false_negative_rates, rule_strategies, score_margins
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
