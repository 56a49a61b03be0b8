"""Retrieve with a model over a split and score the run: the evaluation every notebook shares.

Each split is searched over ``data.search_pids(split)``. For wiki-car that is the passages of the
split's own articles (docs/design.md, wiki-car: the right article is almost always ranked first, the task is
finding the right section), which keeps a full evaluation to seconds on a CPU.
Zero-shot MiniLM corpus embeddings are cached on disk: encoding a corpus is the slow part.
"""
from __future__ import annotations

import hashlib

import numpy as np

from retrlab.bm25 import BM25
from retrlab.cache import home, intact, seal
from retrlab.constants import MEASURES
from retrlab.data.dataset import RetrievalData
from retrlab.encoders import BiEncoder
from retrlab.index import FlatIndex
from retrlab.metrics import evaluate, run_from_arrays


def encode_corpus(model: BiEncoder, data: RetrievalData, pids: list[str], progress: bool = True) -> np.ndarray:
    """(len(pids), dim) passage vectors."""
    return model.encode_passages(data.passage_texts(pids), progress=progress)


def cached_corpus_embeddings(model: BiEncoder, model_key: str, data: RetrievalData,
                             pids: list[str]) -> np.ndarray:
    """Passage vectors of a model that does not change (e.g. zero-shot MiniLM), cached on disk."""
    fingerprint = hashlib.sha1("\n".join(data.passage_texts(pids)).encode()).hexdigest()[:12]
    settings = f"{model.pooling}-{model.normalize}-{model.passage_max_length}"
    path = home() / "embeddings" / f"{model_key}-{settings}-{fingerprint}.npy"
    if intact(path):
        return np.load(path)
    vectors = encode_corpus(model, data, pids)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.npy")
    np.save(tmp, vectors)
    tmp.replace(path)  # atomic: a killed encode never leaves a truncated .npy behind
    seal(path)
    return vectors


def split_to_search(data: RetrievalData, split: str) -> tuple[list[str], list[str]]:
    """The queries of ``split`` and the passages they search; a split with no query is an error."""
    qids = data.qids(split)
    if not qids:
        raise ValueError(f"split {split!r} of {data.name} has no query to evaluate (none has a "
                         f"relevant passage in its qrels)")
    return qids, data.search_pids(split)


def dense_run(model: BiEncoder, data: RetrievalData, split: str, k: int = 100,
              passage_vectors: np.ndarray | None = None, progress: bool = True) -> dict:
    """Retrieve the top-``k`` of ``data.search_pids(split)`` for every query of ``split``."""
    qids, pids = split_to_search(data, split)
    if passage_vectors is None:
        passage_vectors = encode_corpus(model, data, pids, progress)
    query_vectors = model.encode_queries(data.query_texts(qids))
    scores, rows = FlatIndex(passage_vectors).search(query_vectors, k)
    return run_from_arrays(qids, pids, scores, rows)


def bm25_run(data: RetrievalData, split: str, k: int = 100) -> dict:
    qids, pids = split_to_search(data, split)
    scores, rows = BM25(data.passage_texts(pids)).search(data.query_texts(qids), k)
    return run_from_arrays(qids, pids, scores, rows)


def split_qrels(data: RetrievalData, split: str) -> dict:
    return {q: data.qrels[q] for q in data.qids(split)}


def evaluate_run(run: dict, data: RetrievalData, split: str, measures=MEASURES) -> dict[str, float]:
    return evaluate(run, split_qrels(data, split), measures)


def evaluate_model(model: BiEncoder, data: RetrievalData, split: str = "dev", measures=MEASURES,
                   progress: bool = False) -> dict[str, float]:
    """Encode, search and score in one call (what the training loop's eval hook runs)."""
    return evaluate_run(dense_run(model, data, split, progress=progress), data, split, measures)
