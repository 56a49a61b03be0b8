"""Matplotlib figures the notebooks share: score distributions, training curves, metric bars.

One colour per kind of passage everywhere in retrlab, so a learner reads every figure the same way:
labelled positive (teal), hidden positive = false negative (red-orange), negative (grey).
"""
from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np

COLORS = {"labelled positive": "#2a9d8f", "hidden positive": "#e76f51", "negative": "#8d99ae"}
ZONE_COLORS = {"too easy": "#dfe7f2", "ambiguous": "#fcefc7", "too hard": "#f7d6cf"}


def score_groups(scores: np.ndarray, pids: list[str], labelled: set[str], truth: set[str]) -> dict[str, np.ndarray]:
    """Split one query's passage scores into labelled positive / hidden positive / negative."""
    kind = ["labelled positive" if p in labelled else "hidden positive" if p in truth else "negative"
            for p in pids]
    return {k: np.array([s for s, x in zip(scores, kind) if x == k]) for k in COLORS}


def plot_query_scores(rows: list[tuple[str, dict[str, np.ndarray]]], ax=None, title: str = ""):
    """One horizontal strip per query: where its positives and negatives score."""
    ax = ax or plt.subplots(figsize=(9, 0.55 * len(rows) + 1.2))[1]
    rng = np.random.default_rng(0)  # vertical jitter only, so the picture is the same every run
    for y, (_, groups) in enumerate(rows):
        for kind, values in groups.items():
            size, zorder = (90, 3) if kind == "labelled positive" else (28, 2) if kind == "hidden positive" else (8, 1)
            marker = "*" if kind == "labelled positive" else "o"
            ax.scatter(values, y + rng.uniform(-0.15, 0.15, len(values)), s=size, c=COLORS[kind],
                       marker=marker, zorder=zorder, label=kind if y == 0 else None, alpha=0.85)
    ax.set_yticks(range(len(rows)), [_shorten(q) for q, _ in rows])
    ax.invert_yaxis()
    ax.set_xlabel("similarity s(q, d)")
    ax.legend(loc="lower left", fontsize=8, ncol=3)
    ax.set_title(title)
    return ax


def _shorten(text: str, width: int = 48) -> str:
    return text if len(text) <= width else "…" + text[-width + 1:]


def plot_margin_histogram(margins: dict[str, np.ndarray], ax=None, bins: int = 40, title: str = "",
                          density: bool = True):
    """Histogram of s(q,d) - s(q,d+) per kind of candidate (hidden positives vs true negatives).

    ``density=True`` gives each kind the same area (shapes compare, the scarce hidden positives look
    as large as the negatives); ``density=False`` draws raw counts (sizes compare).
    """
    ax = ax or plt.subplots(figsize=(7, 3.2))[1]
    values = np.concatenate([v for v in margins.values() if len(v)])
    edges = np.linspace(values.min(), values.max(), bins + 1)
    for kind, v in margins.items():
        if len(v):
            ax.hist(v, bins=edges, density=density, alpha=0.55, color=COLORS[kind], label=f"{kind} ({len(v)})")
    ax.axvline(0, color="black", lw=1, ls="--")
    ax.set_xlabel("s(q, d) − s(q, d⁺)   (0 = scores like the labelled positive)")
    ax.set_ylabel("density" if density else "candidates")
    ax.legend(fontsize=8)
    ax.set_title(title)
    return ax


def plot_histories(histories: dict, names: tuple[str, ...] = ("loss", "MRR@10"), smooth: int = 5):
    """Training curves: one panel per logged value, one line per run (loss smoothed by a moving mean)."""
    fig, axes = plt.subplots(1, len(names), figsize=(5 * len(names), 3.2), squeeze=False)
    for ax, name in zip(axes[0], names):
        for label, history in histories.items():
            steps, values = history.series(name)
            if not steps:
                continue
            if name == "loss" and len(values) > smooth:
                values = np.convolve(values, np.ones(smooth) / smooth, mode="valid")
                steps = steps[smooth - 1:]
            ax.plot(steps, values, marker="o" if name != "loss" else None, ms=3, label=label)
        ax.set_xlabel("step")
        ax.set_title(name + (f" (moving mean of {smooth})" if name == "loss" else ""))
        ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def plot_metric_bars(results: dict[str, dict[str, float]], measures: tuple[str, ...] = ("MRR@10", "nDCG@10"),
                     ax=None, title: str = ""):
    """Grouped bars: systems on the x axis, one bar per measure."""
    ax = ax or plt.subplots(figsize=(1.6 * len(results) + 2, 3.2))[1]
    x = np.arange(len(results))
    width = 0.8 / len(measures)
    for i, m in enumerate(measures):
        values = [r[m] for r in results.values()]
        bars = ax.bar(x + i * width - 0.4 + width / 2, values, width, label=m)
        ax.bar_label(bars, fmt="%.3f", fontsize=7)
    ax.set_xticks(x, list(results), rotation=15, ha="right")
    ax.set_ylim(0, 1)
    ax.legend(fontsize=8)
    ax.set_title(title)
    return ax


def shade_zones(ax, band: tuple[float, float], offset: float = 0.0) -> None:
    """Shade "too easy" / "ambiguous" / "too hard" behind ``ax``'s data; ``band`` is on Δ, shifted by ``offset``.

    Pass the positive's score as ``offset`` to draw the zones on a raw-score axis.
    """
    low, high = ax.get_xlim()
    edges = [low, min(max(band[0] + offset, low), high), max(min(band[1] + offset, high), low), high]
    for zone, left, right in zip(ZONE_COLORS, edges[:-1], edges[1:]):
        if right > left:
            ax.axvspan(left, right, color=ZONE_COLORS[zone], zorder=0, lw=0)
            ax.text((left + right) / 2, 0.98, zone, transform=ax.get_xaxis_transform(), ha="center", va="top",
                    fontsize=7, color="#555555")
    ax.set_xlim(low, high)
