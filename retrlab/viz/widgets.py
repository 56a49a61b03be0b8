"""Widgets: see where positives, hidden positives, easy and ambiguous negatives fall, and what each rule picks.

* ``SimilarityExplorer`` — one query's candidate pool on the score axis, coloured by kind, with what
  top-k, uniform, SimANS, a score-margin filter and (when probabilities are given) a cross-encoder
  threshold would pick; a query picker, sliders, and a table of the candidates' texts.
* ``DistributionView`` — the whole split: s(q,d) − s(q,d⁺) for hidden positives vs negatives (counts
  or densities), the SimANS kernel drawn over it, and the fraction of each rule's picks that are
  false negatives; given several pools (e.g. before and after training) it switches between them.
* ``TrainingBoard`` — a live loss / dev-metric plot; pass it to ``retrlab.train.train`` as a hook.

Both draw the zones "too easy", "ambiguous" (the kernel's band, ``retrlab.viz.explore.ambiguous_band``)
and "too hard" on the score axis, following a, b and the kernel, with each zone's count of hidden
positives and negatives (``zone_counts``). ``size="presenter"`` renders every figure 1.5× larger
(fonts included) for a projector.

Each widget is a thin view over ``retrlab.viz.explore``: it keeps its current result as attributes
(``result``, ``selected``, ``weights``, ``rates``, ``png``), so tests and exercises read the same
numbers the picture shows. ``set(...)`` changes several controls at once and raises a clear error
for an unknown query or a value outside a slider's range (plain slider assignment would clamp it).
Figures are plain matplotlib ``Figure`` objects rendered to PNG into an ``ipywidgets.Output``, so
they work with the inline backend, in JupyterLab, Voila and nbclient alike. Key widgets carry CSS
classes (``se-*``, ``dv-*``, ``tb-*``) for browser tests.
"""
from __future__ import annotations

import html
import io
import math
import numbers

import ipywidgets as widgets
import numpy as np
from IPython import get_ipython
from IPython.display import Image, display
from matplotlib.figure import Figure

from retrlab.data.dataset import RetrievalData
from retrlab.negatives.simans import KERNELS
from retrlab.pool import CandidatePool
from retrlab.train import History, Hook
from retrlab.viz.explore import (RULES, ZONES, QueryView, Settings, ambiguous_band, explore_query, kernel_curve,
                                 pick_false_negative_rates, rule_strategies, score_margins, zone_counts)
from retrlab.viz.plots import COLORS, plot_margin_histogram, shade_zones

RULE_COLORS = {"top-k": "#264653", "uniform": "#8ab17d", "SimANS": "#e9c46a", "margin": "#6d597a",
               "cross-encoder": "#457b9d"}
SIZES = {"normal": 80, "presenter": 120}  # render dpi: "presenter" draws figures and fonts 1.5× larger


def render_png(fig: Figure, dpi: int = 80) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)  # the figure is laid out by tight_layout already
    return buf.getvalue()


class _FigureWidget(widgets.VBox):
    """A VBox whose figure is redrawn into an Output on every change; subclasses define ``draw``."""

    def _setup(self, controls: list[widgets.Widget], extra: list[widgets.Widget], figsize, css: str,
               size: str = "normal") -> None:
        if size not in SIZES:
            raise ValueError(f"size must be one of {list(SIZES)}, got {size!r}")
        self.dpi = SIZES[size]
        self.figure = Figure(figsize=figsize)
        self.png: bytes = b""
        self.renders = 0  # how many times the figure was redrawn
        self.out = widgets.Output()
        self.out.add_class(f"{css}-plot")
        self._paused = False
        for c in controls:
            c.observe(self._changed, names="value")
        rows = [widgets.HBox(controls[:4]), widgets.HBox(controls[4:])] if controls else []
        self.children = [*rows, self.out, *extra]
        self.add_class(css)

    def _changed(self, change=None) -> None:
        if not self._paused:
            self.update()

    def _check_value(self, slider: widgets.Widget, name: str, value) -> None:
        low, high = getattr(slider, "min", None), getattr(slider, "max", None)
        if low is not None and (isinstance(value, bool) or not isinstance(value, numbers.Real)):
            raise TypeError(f"{name} must be a number, got {value!r}")
        if low is not None and not low <= value <= high:
            raise ValueError(f"{name}={value} is outside the slider's range [{low}, {high}]")
        if hasattr(slider, "options") and value not in [o[1] if isinstance(o, tuple) else o for o in slider.options]:
            raise ValueError(f"{name}={value!r} is not one of the choices {list(slider.options)}")

    def set(self, **values) -> None:
        """Set several controls at once (one redraw); unknown names and out-of-range values raise.

        All or nothing: every value is checked before any is set, and a failure while setting puts
        the old values back, so the controls never disagree with the figure.
        """
        controls = self._controls()
        unknown = set(values) - set(controls)
        if unknown:
            raise ValueError(f"unknown control(s) {sorted(unknown)}; this widget has {sorted(controls)}")
        for name, value in values.items():
            self._check_value(controls[name], name, value)
        before = {name: controls[name].value for name in values}
        self._paused = True
        try:
            for name, value in values.items():
                controls[name].value = value
        except BaseException:
            for name, value in before.items():
                controls[name].value = value
            raise
        finally:
            self._paused = False
        self.update()

    def _show(self, caption: str) -> None:
        self.png = render_png(self.figure, self.dpi)
        self.renders += 1
        self.caption = caption
        if get_ipython() is None:  # plain Python (tests): keep the PNG, print nothing
            return
        self.out.clear_output(wait=True)
        with self.out:
            display(Image(self.png))
            print(caption)  # a text marker after the image: a browser test waits for it (G11)


def _sampler_controls(s, depth_max: int, a_max: float, b_range: tuple[float, float], n_min: int):
    """The SimANS sliders both widgets share: a, b, depth k, number of picks n, kernel.

    A slider silently clamps a value outside its range, so the ranges and the starting settings
    are checked here: a setting the slider cannot show is an error, not a quiet change.
    """
    if not (math.isfinite(a_max) and a_max > 0):
        raise ValueError(f"a_max must be a finite number > 0, got {a_max}")
    if not (len(b_range) == 2 and all(map(math.isfinite, b_range)) and b_range[0] < b_range[1]):
        raise ValueError(f"b_range must be two finite numbers (low, high) with low < high, got {b_range}")
    if not 0 <= s.a <= a_max:
        raise ValueError(f"settings.a={s.a} is outside the a slider's range [0, {a_max}]: raise a_max")
    if not b_range[0] <= s.b <= b_range[1]:
        raise ValueError(f"settings.b={s.b} is outside the b slider's range {list(b_range)}: widen b_range")
    a = widgets.FloatSlider(value=s.a, min=0.0, max=a_max, step=a_max / 500, description="a",
                            continuous_update=False)
    b = widgets.FloatSlider(value=s.b, min=b_range[0], max=b_range[1], step=0.01, description="b",
                            continuous_update=False)
    k = widgets.IntSlider(value=min(s.depth, depth_max), min=1, max=depth_max, description="k (depth)",
                          continuous_update=False)
    n = widgets.IntSlider(value=s.n, min=n_min, max=min(20, depth_max), description="n (picks)",
                          continuous_update=False)
    kernel = widgets.Dropdown(options=list(KERNELS), value=s.kernel, description="kernel")
    return a, b, k, n, kernel


def _depth_max(pool: CandidatePool) -> int:
    """The deepest candidate list: the range of the k slider (an empty pool has nothing to show)."""
    depth = max((len(p) for p in pool.pids), default=0)
    if depth == 0:
        raise ValueError(f"the {pool.source} pool has no candidates ({len(pool)} queries): nothing to explore")
    return depth


def _margin_controls(settings: Settings) -> tuple[widgets.Dropdown, widgets.FloatSlider]:
    kind = "absolute" if settings.absolute_margin is not None else "relative" if settings.relative_margin is not None else "off"
    value = settings.absolute_margin if kind == "absolute" else settings.relative_margin if kind == "relative" else 0.05
    toggle = widgets.Dropdown(options=["off", "absolute", "relative"], value=kind, description="margin rule")
    slider = widgets.FloatSlider(value=value, min=0.0, max=0.5, step=0.01, description="margin m",
                                 continuous_update=False, readout_format=".2f")
    return toggle, slider


def _margins_from(toggle: widgets.Dropdown, slider: widgets.FloatSlider) -> dict:
    return {"absolute_margin": slider.value if toggle.value == "absolute" else None,
            "relative_margin": slider.value if toggle.value == "relative" else None}


def _zones_html(counts: dict[str, dict[str, int]], band: tuple[float, float]) -> str:
    """The zone counts as a small table (the browser test reads its cells)."""
    head = "".join(f"<th>{zone}</th>" for zone in ZONES)
    rows = "".join(f"<tr><td>{kind}</td>" + "".join(f"<td class='zone-{z.replace(' ', '-')}'>{counts[z][kind]}</td>"
                                                     for z in ZONES) + "</tr>" for kind in ("hidden positive", "negative"))
    return (f"<div style='font-size:12px'>ambiguous band: Δ in [{band[0]:+.3f}, {band[1]:+.3f}] "
            f"<table><tr><th></th>{head}</tr>{rows}</table></div>")


def _zones_caption(counts: dict[str, dict[str, int]]) -> str:
    return "zones (hidden/negative): " + ", ".join(
        f"{z} {counts[z]['hidden positive']}/{counts[z]['negative']}" for z in ZONES)


def _check_probabilities(probabilities: dict[str, np.ndarray], pool: CandidatePool, qid: str) -> None:
    """``probabilities[qid]``: P(relevant) in [0, 1] of the first m (1 <= m <= pool size) candidates of ``qid``."""
    if qid not in probabilities:
        raise KeyError(f"ce_probabilities has no entry for query {qid!r}")
    p, n = np.asarray(probabilities[qid], dtype=float), len(pool.candidates(qid)[0])
    if p.ndim != 1 or not 1 <= len(p) <= n:
        raise ValueError(f"ce_probabilities[{qid!r}] has shape {p.shape}; give one probability for each of the "
                         f"first 1..{n} pool candidates of that query")
    if not (np.isfinite(p).all() and ((0 <= p) & (p <= 1)).all()):
        raise ValueError(f"ce_probabilities[{qid!r}] must be probabilities in [0, 1] (no NaN)")


class SimilarityExplorer(_FigureWidget):
    """Per query: the candidates' scores, their kinds, and what each sampling rule would pick.

    ``ce_probabilities`` (qid -> P(relevant) of the query's first m pool candidates, aligned with
    ``pool.pids``) adds the cross-encoder row and a threshold slider (RocketQA's veto,
    ``retrlab.negatives.denoise.keep_as_negative``): an × marks each candidate it drops.
    When the positive was not retrieved, SimANS' marker sizes show its fallback (the n lowest-ranked).
    Exposed: ``result`` (QueryView), ``selected`` (rule -> picked pids), ``weights`` (SimANS
    pick chances of the shown candidates), ``band`` and ``zone_counts`` (this query's candidates),
    ``veto`` (counts: scored, dropped, hidden, caught; None without probabilities), ``qid``, ``settings``,
    ``figure``, ``png``.
    """

    def __init__(self, pool: CandidatePool, data: RetrievalData, qids: list[str] | None = None,
                 settings: Settings | None = None, ce_probabilities: dict[str, np.ndarray] | None = None,
                 a_max: float = 500.0, b_range: tuple[float, float] = (-0.5, 0.5), max_rows: int = 20,
                 size: str = "normal") -> None:
        super().__init__()
        s = settings or Settings()
        if max_rows < 0:
            raise ValueError(f"max_rows must be >= 0, got {max_rows}")
        self.pool, self.data, self.ce_probabilities, self.max_rows = pool, data, ce_probabilities, max_rows
        depth_max = _depth_max(pool)
        qids = list(pool.qids if qids is None else qids)
        if not qids:
            raise ValueError("qids is empty: give at least one query to explore (or None for the whole pool)")
        for q in qids:
            pool.index(q)  # KeyError naming the query if it is not in the pool
            if ce_probabilities is not None:
                _check_probabilities(ce_probabilities, pool, q)
        self.query = widgets.Dropdown(options=[(f"{q}: {data.queries[q][:70]}", q) for q in qids],
                                      value=qids[0], description="query", layout={"width": "640px"})
        self.a, self.b, self.k, self.n, self.kernel = _sampler_controls(s, depth_max, a_max, b_range, n_min=0)
        self.margin_kind, self.margin = _margin_controls(s)
        self.threshold = widgets.FloatSlider(value=s.ce_threshold, min=0.0, max=1.0, step=0.005,
                                             description="CE threshold", continuous_update=False,
                                             readout_format=".3f")
        for w, css in [(self.query, "se-query"), (self.a, "se-a"), (self.b, "se-b"), (self.k, "se-k"),
                       (self.n, "se-n"), (self.margin, "se-margin"), (self.threshold, "se-threshold")]:
            w.add_class(css)
        self.table = widgets.HTML()
        self.table.add_class("se-table")
        self.summary = widgets.HTML()
        self.summary.add_class("se-summary")
        self.zones = widgets.HTML()
        self.zones.add_class("se-zones")
        controls = [self.query, self.a, self.b, self.k, self.n, self.kernel, self.margin_kind, self.margin]
        if ce_probabilities is not None:
            controls.append(self.threshold)  # the slider appears only when there is something to threshold
        self._setup(controls, [self.summary, self.zones, self.table], (9.5, 4.2), "simans-explorer", size)
        self.update()

    def _controls(self) -> dict[str, widgets.Widget]:
        controls = {"qid": self.query, "a": self.a, "b": self.b, "depth": self.k, "n": self.n,
                    "kernel": self.kernel, "margin_kind": self.margin_kind, "margin": self.margin}
        if self.ce_probabilities is not None:
            controls["ce_threshold"] = self.threshold
        return controls

    def _check_value(self, slider, name, value) -> None:
        if name == "qid" and value not in [q for _, q in slider.options]:
            raise KeyError(f"query {value!r} is not among the explorer's {len(slider.options)} queries "
                           f"(e.g. {[q for _, q in slider.options[:3]]})")
        super()._check_value(slider, name, value)

    @property
    def qid(self) -> str:
        return self.query.value

    @property
    def settings(self) -> Settings:
        return Settings(a=self.a.value, b=self.b.value, depth=self.k.value, n=min(self.n.value, self.k.value),
                        kernel=self.kernel.value, ce_threshold=self.threshold.value,
                        **_margins_from(self.margin_kind, self.margin))

    def update(self) -> None:
        self.result: QueryView = explore_query(self.pool, self.data, self.qid, self.settings, self.ce_probabilities)
        self.selected = dict(self.result.picks)
        self.weights = self.result.probabilities["SimANS"]
        s = self.settings
        self.band = ambiguous_band(s.a, s.b, s.kernel)
        self.zone_counts = self.result.zone_counts(self.band)
        self.veto = self.result.veto() if self.ce_probabilities is not None else None
        self.draw()
        fn = ", ".join(f"{r} {self.result.false_negatives(r)}/{len(p)}" for r, p in self.selected.items())
        caption = (f"{self.qid} | a={s.a:g} b={s.b:+.2f} k={s.depth} n={s.n} | false negatives picked: {fn} | "
                   f"{_zones_caption(self.zone_counts)}")
        if self.veto:
            caption += (f" | CE veto p >= {s.ce_threshold:.3f}: drops {self.veto['dropped']} of "
                        f"{self.veto['scored']}, catches {self.veto['caught']} of {self.veto['hidden']} hidden positives")
        self.zones.value = _zones_html(self.zone_counts, self.band)
        self.summary.value = f"<b>{html.escape(self.result.query)}</b><br>{html.escape(caption)}"
        self.table.value = self._table_html()
        self._show(caption)

    def draw(self) -> None:
        v, fig = self.result, self.figure
        fig.clear()
        ax = fig.add_subplot(111)
        rules = [r for r in RULES if r in v.probabilities]
        colors = np.array([COLORS[k] for k in v.kinds])
        rng = np.random.default_rng(0)  # fixed vertical jitter: same picture for the same settings
        jitter = rng.uniform(-0.12, 0.12, len(v.pids))
        ax.scatter(v.scores, jitter, c=colors, s=18, zorder=2)
        ax.scatter([v.positive_score], [0], marker="*", s=220, c=COLORS["labelled positive"], zorder=4,
                   edgecolors="black", label="labelled positive")
        for y, rule in enumerate(rules if len(v.pids) else [], start=1):  # a query may have no candidate
            p = v.probabilities[rule]
            size = 6 + 140 * p / p.max() if len(p) and p.max() > 0 else np.full(len(p), 6.0)
            picked = np.isin(v.pids, v.picks[rule])
            size = np.where(picked, np.maximum(size, 40), size)  # a pick's ring stays visible
            ax.scatter(v.scores, y + jitter, c=colors, s=size, alpha=0.45 + 0.5 * picked, zorder=2,
                       edgecolors=np.where(picked, "black", "none"), linewidths=1.2)
            if rule in v.kept:  # filters: mark what they drop
                dropped = ~v.kept[rule]
                ax.scatter(v.scores[dropped], y + jitter[dropped], marker="x", c="black", s=14, zorder=3)
        ax.axvline(v.positive_score, color=COLORS["labelled positive"], lw=1.5, zorder=1)
        low, high = np.min(v.scores, initial=v.positive_score), np.max(v.scores, initial=v.positive_score)
        ax.set_xlim(low - 0.02, high + 0.02)
        shade_zones(ax, self.band, offset=v.positive_score)  # the zones live on Δ; this axis is s(q, d)
        grid = np.linspace(low - 0.02, high + 0.02, 300)
        curve = kernel_curve(grid - v.positive_score, self.a.value, self.b.value, self.kernel.value)
        twin = ax.twinx()
        (self.kernel_line,) = twin.plot(grid, curve, color=RULE_COLORS["SimANS"], lw=2, label="SimANS kernel")
        twin.set_ylim(0, 1.05)
        twin.set_ylabel("SimANS kernel (peak 1)")
        ax.set_yticks(range(len(rules) + 1), ["candidates", *[self._row_label(r) for r in rules]])
        ax.set_ylim(len(rules) + 0.5, -0.6)
        ax.set_xlabel("similarity s(q, d)   (vertical line: the labelled positive; size = chance of a pick; "
                      "black ring = picked; x = dropped by the filter)", fontsize=8)
        for kind in ("hidden positive", "negative"):
            ax.scatter([], [], c=COLORS[kind], s=18, label=kind)
        ax.legend(loc="upper left", fontsize=7, ncol=3, bbox_to_anchor=(0, 1.13))
        fig.tight_layout()

    def _row_label(self, rule: str) -> str:
        label = f"{rule}\n({len(self.result.picks[rule])} picked)"
        if rule == "cross-encoder":
            label += f"\ndrops {self.veto['dropped']}, {self.veto['caught']}/{self.veto['hidden']} hidden"
        return label

    def _table_html(self) -> str:
        v = self.result
        rows = []
        for j, (pid, score, kind, text) in enumerate(zip(v.pids, v.scores, v.kinds, v.texts)):
            if j >= self.max_rows:
                break
            by = ", ".join(r for r, picks in v.picks.items() if pid in picks)
            ce = "" if v.ce_probabilities is None else (
                f"<td>{v.ce_probabilities[j]:.3f}</td>" if j < len(v.ce_probabilities) else "<td>–</td>")
            rows.append(f"<tr><td>{j + 1}</td><td><code>{pid}</code></td><td>{score:.3f}</td><td>{score - v.positive_score:+.3f}</td>"
                        f"<td style='color:{COLORS[kind]}'>{kind}</td><td>{self.weights[j]:.3f}</td>{ce}"
                        f"<td>{html.escape(by)}</td><td>{html.escape(text[:160])}…</td></tr>")
        ce_head = "" if v.ce_probabilities is None else "<th>CE p</th>"
        head = ("<tr><th>rank</th><th>pid</th><th>score</th><th>Δ to d⁺</th><th>kind</th><th>SimANS p</th>"
                f"{ce_head}<th>picked by</th><th>text</th></tr>")
        positive = html.escape(self.data.passage_text(v.positive_pid)[:160])
        return (f"<div style='font-size:12px'>labelled positive <code>{v.positive_pid}</code> score "
                f"{v.positive_score:.3f} (rank {v.positive_rank or 'not retrieved'}): {positive}…"
                f"<table>{head}{''.join(rows)}</table>"
                f"{'' if len(v.pids) <= self.max_rows else f'… {len(v.pids) - self.max_rows} more candidates'}</div>")


class DistributionView(_FigureWidget):
    """Whole split: margins to the positive for hidden positives vs negatives, the kernel, zones and FN rates.

    ``pool`` is one ``CandidatePool`` or a dict name -> pool (e.g. ``{"zero-shot": ..., "after SimANS":
    ...}``): a "pool" dropdown then switches between them, so a class sees the distributions move.
    Exposed: ``pool`` (the one shown), ``margins`` (kind -> Δ values), ``rates`` (rule -> fraction of
    picks that are hidden positives, over every query of the pool, seeded), ``band``, ``zone_counts``,
    ``kernel_x``/``kernel_y``, ``figure``, ``png``.
    """

    def __init__(self, pool: CandidatePool | dict[str, CandidatePool], settings: Settings | None = None,
                 a_max: float = 500.0, b_range: tuple[float, float] = (-0.5, 0.5), size: str = "normal") -> None:
        super().__init__()
        s = settings or Settings()
        self.pools = dict(pool) if isinstance(pool, dict) else {pool.source: pool}
        if not self.pools:
            raise ValueError("pool is an empty dict: give at least one CandidatePool")
        depth_max = max(_depth_max(p) for p in self.pools.values())
        self.a, self.b, self.k, self.n, self.kernel = _sampler_controls(s, depth_max, a_max, b_range, n_min=1)
        self.margin_kind, self.margin = _margin_controls(s)
        self.pool_choice = widgets.Dropdown(options=list(self.pools), description="pool")
        self.histogram = widgets.ToggleButtons(options=["density", "counts"], description="histogram")
        for w, css in [(self.a, "dv-a"), (self.b, "dv-b"), (self.k, "dv-k"), (self.n, "dv-n"),
                       (self.pool_choice, "dv-pool"), (self.histogram, "dv-histogram")]:
            w.add_class(css)
        self.zones = widgets.HTML()
        self.zones.add_class("dv-zones")
        controls = [self.a, self.b, self.k, self.n, self.kernel, self.margin_kind, self.margin, self.histogram]
        if len(self.pools) > 1:
            controls.insert(4, self.pool_choice)  # the dropdown appears only when there is a choice
        self._setup(controls, [self.zones], (11, 3.4), "distribution-view", size)
        self.update()

    def _controls(self) -> dict[str, widgets.Widget]:
        return {"a": self.a, "b": self.b, "depth": self.k, "n": self.n, "kernel": self.kernel,
                "margin_kind": self.margin_kind, "margin": self.margin, "pool": self.pool_choice,
                "histogram": self.histogram}

    @property
    def pool(self) -> CandidatePool:
        return self.pools[self.pool_choice.value]

    @property
    def settings(self) -> Settings:
        return Settings(a=self.a.value, b=self.b.value, depth=self.k.value, n=min(self.n.value, self.k.value),
                        kernel=self.kernel.value, **_margins_from(self.margin_kind, self.margin))

    def update(self) -> None:
        s = self.settings
        self.margins = score_margins(self.pool, s.depth)
        self.rates = pick_false_negative_rates(self.pool, rule_strategies(self.pool, s), s.seed)
        self.band = ambiguous_band(s.a, s.b, s.kernel)
        self.zone_counts = zone_counts(self.margins, self.band)
        values = np.concatenate(list(self.margins.values()))
        self.kernel_x = np.linspace(values.min(), values.max(), 300)
        self.kernel_y = kernel_curve(self.kernel_x, s.a, s.b, s.kernel)
        self.draw()
        self.zones.value = _zones_html(self.zone_counts, self.band)
        rates = ", ".join(f"{r} {x:.1%}" for r, x in self.rates.items())
        self._show(f"{self.pool_choice.value} | {self.histogram.value} | a={s.a:g} b={s.b:+.2f} k={s.depth} n={s.n} | "
                   f"false negatives among the picks: {rates} | {_zones_caption(self.zone_counts)}")

    def draw(self) -> None:
        fig = self.figure
        fig.clear()
        ax, bars = fig.subplots(1, 2, gridspec_kw={"width_ratios": [2.2, 1]})
        plot_margin_histogram(self.margins, ax=ax, density=self.histogram.value == "density",
                              title=f"{self.pool_choice.value}: top-{self.k.value} candidates of {len(self.pool)} queries")
        shade_zones(ax, self.band)
        twin = ax.twinx()
        twin.plot(self.kernel_x, self.kernel_y, color=RULE_COLORS["SimANS"], lw=2)
        twin.set_ylim(0, 1.05)
        twin.set_ylabel("SimANS kernel (peak 1)")
        names = list(self.rates)
        b = bars.bar(names, [self.rates[r] for r in names], color=[RULE_COLORS[r] for r in names])
        bars.bar_label(b, fmt="%.2f", fontsize=8)
        bars.set_ylabel("share of picks that are hidden positives")
        bars.set_title(f"false negatives picked (n={self.n.value} per query)")
        bars.tick_params(axis="x", labelsize=8)
        fig.tight_layout()


class TrainingBoard(_FigureWidget):
    """A live training plot. ``train(..., hooks=[board.hook_for(steps)], history=board.history)``.

    Called as a hook it redraws loss (moving mean) and the other ``names`` from ``board.history``;
    every ``evaluate_every`` steps (and at the last) it also runs ``evaluate(step, model)`` (e.g. a
    dev evaluation, the expensive part) and logs its values. ``hook_for(steps)`` redraws at least
    every 10% of the steps.
    """

    def __init__(self, names: tuple[str, ...] = ("loss", "MRR@10"), evaluate=None, history: History | None = None,
                 smooth: int = 5, title: str = "", size: str = "normal") -> None:
        super().__init__()
        if not names:
            raise ValueError("names is empty: give at least one logged value to plot, e.g. ('loss',)")
        if smooth < 1:
            raise ValueError(f"smooth (the moving-mean window) must be >= 1, got {smooth}")
        self.names, self.evaluate, self.smooth, self.title = names, evaluate, smooth, title
        self.history = history or History()
        self.evaluate_every: int | None = None  # None: evaluate at every call
        self.last_step: int | None = None  # the run's last step, always evaluated (set by hook_for)
        self._setup([], [], (4.5 * len(names), 2.8), "training-board", size)
        self.update()

    def _controls(self) -> dict[str, widgets.Widget]:
        return {}

    def hook(self, every: int, evaluate_every: int | None = None) -> Hook:
        """Redraw every ``every`` steps; evaluate every ``evaluate_every`` (default: at each redraw)."""
        if every < 1:
            raise ValueError(f"every must be >= 1, got {every}")
        if evaluate_every is not None and evaluate_every < 1:
            raise ValueError(f"evaluate_every must be >= 1 (or None), got {evaluate_every}")
        self.evaluate_every = evaluate_every
        return Hook(every, self)

    def hook_for(self, steps: int, evaluations: int = 2) -> Hook:
        """A hook for a run of ``steps``: redraws at least every 10% of them, evaluates ``evaluations`` times."""
        if steps < 1 or evaluations < 1:
            raise ValueError(f"steps and evaluations must be >= 1, got {steps} and {evaluations}")
        hook = self.hook(max(steps // 10, 1), evaluate_every=max(steps // evaluations, 1))
        self.last_step = steps
        return hook

    def _evaluates_at(self, step: int) -> bool:
        every = self.evaluate_every
        return every is None or step % every == 0 or step == self.last_step

    def __call__(self, step: int, model) -> dict:
        values = self.evaluate(step, model) if self.evaluate and self._evaluates_at(step) else {}
        if values:
            self.history.log(step, **values)
        self.update()
        return values or {}

    def update(self) -> None:
        self.draw()
        last = self.history.rows[-1] if self.history.rows else {}
        shown = ", ".join(f"{k} {last[k]:.4f}" for k in self.names if k in last)
        self._show(f"step {last.get('step', 0)}: {shown}" if last else "waiting for the first step")

    def draw(self) -> None:
        fig = self.figure
        fig.clear()
        for i, name in enumerate(self.names):
            ax = fig.add_subplot(1, len(self.names), i + 1)
            steps, values = self.history.series(name)
            if name == "loss" and len(values) > self.smooth:
                values = np.convolve(values, np.ones(self.smooth) / self.smooth, mode="valid")
                steps = steps[self.smooth - 1:]
            ax.plot(steps, values, marker=None if name == "loss" else "o", ms=3)
            ax.set_xlabel("step")
            ax.set_title(f"{self.title} {name}".strip())
        fig.tight_layout()
