import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from retrlab.train import History  # noqa: E402
from retrlab.viz.plots import (plot_histories, plot_margin_histogram, plot_metric_bars,  # noqa: E402
                               plot_query_scores, score_groups)


def test_score_groups_splits_by_label_and_truth():
    groups = score_groups(np.array([0.9, 0.8, 0.1, 0.7]), ["a", "b", "c", "d"], {"a"}, {"a", "d"})
    assert groups["labelled positive"].tolist() == [0.9]
    assert groups["hidden positive"].tolist() == [0.7]
    assert groups["negative"].tolist() == [0.8, 0.1]


def test_query_strips_draw_every_point():
    groups = score_groups(np.array([0.9, 0.8, 0.1]), ["a", "b", "c"], {"a"}, {"a", "b"})
    ax = plot_query_scores([("q one", groups), ("q two", groups)])
    offsets = [len(c.get_offsets()) for c in ax.collections]
    assert sum(offsets) == 6 and [t.get_text() for t in ax.get_yticklabels()] == ["q one", "q two"]
    plt.close("all")


def test_margin_histogram_and_bars_and_curves():
    ax = plot_margin_histogram({"hidden positive": np.array([0.0, 0.1]), "negative": np.array([-0.5, -0.2, -0.1])})
    assert len(ax.patches) == 80  # two histograms of 40 bins
    ax = plot_metric_bars({"a": {"MRR@10": 0.5, "nDCG@10": 0.4}, "b": {"MRR@10": 0.6, "nDCG@10": 0.5}})
    assert [round(p.get_height(), 2) for p in ax.patches] == [0.5, 0.6, 0.4, 0.5]
    h = History()
    for step in range(1, 11):
        h.log(step, loss=10.0 - step)
    h.log(10, **{"MRR@10": 0.7})
    fig = plot_histories({"run": h})
    loss_line = fig.axes[0].lines[0]
    assert list(loss_line.get_xdata()) == [5, 6, 7, 8, 9, 10]  # moving mean of 5
    assert list(fig.axes[1].lines[0].get_ydata()) == [0.7]
    plt.close("all")
