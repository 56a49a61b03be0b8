"""Classroom dashboards for ``retrlab present``: small notebooks that Voila serves as widgets only.

Each view has a notebook here (package data) and a ``prepare`` step that builds what it shows into
the cache, so that the dashboard itself only loads: ``retrlab present`` runs ``prepare`` once, then
every page load (a fresh kernel each, Voila's way) reads the cached pool in seconds.

* ``simans`` — notebook 07's widgets on its pool: the top-k candidates of zero-shot MiniLM for the
  training queries (400 in default mode, as in 07; 100 in smoke mode), cached as JSON with a manifest
  under ``$RETRLAB_HOME/pools/``. ``SimilarityExplorer`` on the queries with a hidden positive in their
  top 10, and ``DistributionView`` on the whole pool, both at ``size="presenter"``.
* ``rocketqa`` — notebook 05's cross-encoder veto on the same pool: notebook 05's cross-encoder
  (``retrlab.artifacts.cross_encoder``, built once on notebook 05's data) scores the top 10 of the
  first queries with a hidden positive there (40; smoke: 12), cached as JSON with a manifest next to
  the pool. ``SimilarityExplorer`` with those probabilities: the threshold slider shows which
  candidates the veto drops and how many hidden positives it catches.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from retrlab.data import RetrievalData
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
DASHBOARDS = {"simans": "simans.ipynb", "rocketqa": "rocketqa.ipynb"}
EXPLORED_DEPTH = 10  # the explorers show queries with a hidden positive in their top 10 (notebook 05's DEPTH)
EXPLORED_QUERIES = 40  # a few dozen in the explorers' query list
VETO_QUERIES = {False: EXPLORED_QUERIES, True: 12}  # queries whose top 10 the cross-encoder scores
VETO_THRESHOLD = 0.1  # RocketQA's t-: a candidate with P(relevant) >= 0.1 is no longer a negative
LESSON_SMOKE_SPLITS = {"train": 100, "dev": 40, "test": 40}  # notebook 05's smoke data


def dashboard_path(view: str) -> Path:
    if view not in DASHBOARDS:
        raise ValueError(f"no dashboard named {view!r}; choose one of {sorted(DASHBOARDS)}")
    return FOLDER / DASHBOARDS[view]


def simans_data(smoke: bool, wikicar: RetrievalData | None = None) -> RetrievalData:
    """Notebook 07's training queries (the first 400; smoke: 100) of wiki-car (loaded unless given)."""
    from retrlab.data import load_wikicar

    wikicar = load_wikicar(seed=SEED) if wikicar is None else wikicar
    return wikicar.subset({"train": POOL_SPECS[bool(smoke)].train_queries})


def lesson_data(smoke: bool, wikicar: RetrievalData) -> RetrievalData:
    """Notebook 05's data, its cross-encoder's training data: all of wiki-car; smoke: 100/40/40 queries."""
    return wikicar.subset(LESSON_SMOKE_SPLITS) if smoke else wikicar


def pool_path(data: RetrievalData, smoke: bool) -> Path:
    """Where the dashboard pool of ``data`` is cached (named by the data's fingerprint and the spec)."""
    from retrlab.artifacts import fingerprint
    from retrlab.cache import home

    spec = POOL_SPECS[bool(smoke)]
    return home() / "pools" / f"minilm-zeroshot-{fingerprint(data)}-len{spec.max_length}-d{spec.depth}.json"


def simans_pool(data: RetrievalData, smoke: bool) -> CandidatePool:
    """The top-k of zero-shot MiniLM for notebook 07's training queries (``data``), built once and cached."""
    from retrlab.artifacts import load_pool, save_pool
    from retrlab.cache import intact, seal

    path = pool_path(data, smoke)
    if intact(path):
        return load_pool(path)
    from retrlab.encoders import BiEncoder
    from retrlab.evaluation import cached_corpus_embeddings
    from retrlab.pool import dense_pool

    spec = POOL_SPECS[bool(smoke)]
    model = BiEncoder.minilm(passage_max_length=spec.max_length)
    vectors = cached_corpus_embeddings(model, "minilm", data, data.search_pids("train"))
    pool = dense_pool(model, data, "train", depth=spec.depth, passage_vectors=vectors, source="minilm zero-shot")
    seal(save_pool(pool, path))
    return pool


def explored_queries(pool: CandidatePool, limit: int) -> list[str]:
    """The first ``limit`` queries with a hidden positive in their top 10 (if none: the first ``limit``)."""
    hidden = [q for i, q in enumerate(pool.qids) if pool.hidden[i][:EXPLORED_DEPTH].any()]
    return (hidden or pool.qids)[:limit]


def veto_probabilities(smoke: bool) -> tuple[RetrievalData, CandidatePool, dict[str, np.ndarray]]:
    """(pool data, pool, qid -> cross-encoder P(relevant) of its top 10): the ``rocketqa`` view's data.

    The probabilities are scored once and cached; the file's name carries the pool's and the
    cross-encoder's cache keys, so a new pool or a rebuilt cross-encoder is scored anew.
    """
    from retrlab.artifacts import cross_encoder_folder
    from retrlab.cache import atomic_write_json, intact, load_json, seal
    from retrlab.data import load_wikicar

    wikicar = load_wikicar(seed=SEED)
    data = simans_data(smoke, wikicar)
    pool = simans_pool(data, smoke)
    folder = cross_encoder_folder(lesson_data(smoke, wikicar), smoke=bool(smoke))  # built on first call
    pool_file = pool_path(data, smoke)
    path = pool_file.with_name(f"{pool_file.stem}-top{EXPLORED_DEPTH}-q{VETO_QUERIES[bool(smoke)]}"
                               f"-{folder.name}.json")
    if not intact(path):
        from retrlab.encoders import CrossEncoder
        from retrlab.rerank import score_candidates

        qids = explored_queries(pool, VETO_QUERIES[bool(smoke)])
        candidates = [list(pool.candidates(q)[0][:EXPLORED_DEPTH]) for q in qids]
        probs = score_candidates(CrossEncoder.from_pretrained(folder), data, qids, candidates, progress=False)
        seal(atomic_write_json(path, {q: p.tolist() for q, p in zip(qids, probs)}))
    return data, pool, {q: np.asarray(p, dtype=np.float64) for q, p in load_json(path).items()}


def prepare(view: str, smoke: bool) -> None:
    """Build into the cache what the dashboard ``view`` shows, so that it opens without training."""
    dashboard_path(view)  # an unknown view fails here
    if view == "rocketqa":
        veto_probabilities(smoke)  # the pool, the cross-encoder, and its probabilities
    else:
        simans_pool(simans_data(smoke), smoke)


def simans_widgets(smoke: bool):
    """(explorer, distribution view) on the cached pool, as the dashboard shows them."""
    from retrlab.viz.explore import Settings
    from retrlab.viz.widgets import DistributionView, SimilarityExplorer

    spec = POOL_SPECS[bool(smoke)]
    data = simans_data(smoke)
    pool = simans_pool(data, smoke)
    interesting = explored_queries(pool, EXPLORED_QUERIES)
    explorer = SimilarityExplorer(pool, data, qids=interesting, size="presenter",
                                  settings=Settings(a=A, b=B, kernel=KERNEL, depth=spec.depth, n=3))
    view = DistributionView(pool, Settings(a=A, b=B, kernel=KERNEL, depth=spec.depth, n=1, absolute_margin=0.05),
                            size="presenter")
    return explorer, view


def rocketqa_widgets(smoke: bool):
    """The explorer with the cross-encoder's probabilities and threshold slider (notebook 05's veto view)."""
    from retrlab.viz.explore import Settings
    from retrlab.viz.widgets import SimilarityExplorer

    data, pool, probabilities = veto_probabilities(smoke)
    return SimilarityExplorer(pool, data, qids=list(probabilities), ce_probabilities=probabilities,
                              size="presenter",
                              settings=Settings(depth=EXPLORED_DEPTH, n=1, ce_threshold=VETO_THRESHOLD))
