"""Classroom dashboards for ``retrlab present``: small notebooks that Voila serves as widgets only.

Each view has a notebook here (package data) and a ``prepare`` step that builds what it shows into
the cache, so that the dashboard itself only loads: ``retrlab present`` runs ``prepare`` once, then
every page load (a fresh kernel each, Voila's way) reads the cached pool in seconds.

* ``simans`` — notebook 07's widgets on its pool: the top-k candidates of zero-shot MiniLM for the
  training queries (400 in default mode, as in 07; 100 in smoke mode), cached as JSON with a manifest
  under ``$RETRLAB_HOME/pools/``. ``SimilarityExplorer`` on the queries with a hidden positive in their
  top 10, and ``DistributionView`` on the whole pool, both at ``size="presenter"``.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from retrlab.pool import CandidatePool

FOLDER = Path(__file__).parent
SEED = 0
TAU = 0.05
# notebook 07's SimANS setting: the NQ script's a=0.5, b=1 on logits, moved to cosines at τ = 0.05
A, B, KERNEL = round(0.5 / TAU**2, 6), 1.0 * TAU, "gaussian-code"
# larger text for a projector (the figures are drawn 1.5x larger by size="presenter"); labels keep
# their size so that the controls' descriptions still fit
PRESENTER_CSS = """<style>
.jp-RenderedHTMLCommon p { font-size: 17px; }
:is(.se-summary, .se-table, .se-zones, .dv-zones) .widget-html-content { font-size: 16px !important; }
.jupyter-widgets-output-area pre { font-size: 16px !important; }
</style>"""


@dataclass(frozen=True)
class PoolSpec:
    """Which pool a dashboard shows (notebook 07's numbers for each mode)."""

    train_queries: int
    depth: int
    max_length: int


POOL_SPECS = {False: PoolSpec(400, 100, 64), True: PoolSpec(100, 30, 48)}
DASHBOARDS = {"simans": "simans.ipynb"}


def dashboard_path(view: str) -> Path:
    if view not in DASHBOARDS:
        raise ValueError(f"no dashboard named {view!r}; choose one of {sorted(DASHBOARDS)}")
    return FOLDER / DASHBOARDS[view]


def simans_data(smoke: bool):
    from retrlab.data import load_wikicar

    spec = POOL_SPECS[bool(smoke)]
    return load_wikicar(seed=SEED).subset({"train": spec.train_queries})


def simans_pool(smoke: bool) -> CandidatePool:
    """The top-k of zero-shot MiniLM for notebook 07's training queries, built once and cached."""
    from retrlab.artifacts import fingerprint, load_pool, save_pool
    from retrlab.cache import home, intact, seal

    spec = POOL_SPECS[bool(smoke)]
    data = simans_data(smoke)
    path = home() / "pools" / f"minilm-zeroshot-{fingerprint(data)}-len{spec.max_length}-d{spec.depth}.json"
    if intact(path):
        return load_pool(path)
    from retrlab.encoders import BiEncoder
    from retrlab.evaluation import cached_corpus_embeddings
    from retrlab.pool import dense_pool

    model = BiEncoder.minilm(passage_max_length=spec.max_length)
    vectors = cached_corpus_embeddings(model, "minilm", data, data.search_pids("train"))
    pool = dense_pool(model, data, "train", depth=spec.depth, passage_vectors=vectors, source="minilm zero-shot")
    seal(save_pool(pool, path))
    return pool


def prepare(view: str, smoke: bool) -> None:
    """Build into the cache what the dashboard ``view`` shows, so that it opens without training."""
    dashboard_path(view)  # an unknown view fails here
    simans_pool(smoke)


def simans_widgets(smoke: bool):
    """(explorer, distribution view) on the cached pool, as the dashboard shows them."""
    from retrlab.viz.explore import Settings
    from retrlab.viz.widgets import DistributionView, SimilarityExplorer

    spec = POOL_SPECS[bool(smoke)]
    data, pool = simans_data(smoke), simans_pool(smoke)
    interesting = [q for i, q in enumerate(pool.qids) if pool.hidden[i][:10].any()][:40] or None
    explorer = SimilarityExplorer(pool, data, qids=interesting, size="presenter",
                                  settings=Settings(a=A, b=B, kernel=KERNEL, depth=spec.depth, n=3))
    view = DistributionView(pool, Settings(a=A, b=B, kernel=KERNEL, depth=spec.depth, n=1, absolute_margin=0.05),
                            size="presenter")
    return explorer, view
