"""The candidate pool: what every negative-sampling strategy draws from.

For each training query, a retriever (BM25 or a dense model) ranks the passages; the labelled
positives are removed; what remains, best first, is the query's pool of candidate negatives.
Strategies then differ only where the papers differ: *which* retriever built the pool (BM25 for
DPR, a warm-up model once for STAR, the current model for ANCE) and *how* negatives are picked
from it (top-k, uniform, a cross-encoder filter, SimANS' ambiguity kernel).

Because wiki-car keeps the complete ground truth beside the sparse labels, every candidate is
flagged: ``hidden[i, j]`` is True when candidate j of query i is in fact relevant — a false
negative a real miner could not see. Strategies never read the flags; notebooks use them to
measure false-negative rates.
"""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from retrlab.bm25 import BM25
from retrlab.data.dataset import RetrievalData
from retrlab.encoders import BiEncoder
from retrlab.evaluation import encode_corpus
from retrlab.index import FlatIndex


@dataclass
class CandidatePool:
    source: str  # which retriever ranked the candidates, e.g. "bm25" or "minilm"
    qids: list[str]
    pids: list[list[str]]  # per query, candidate pids best first (labelled positives removed)
    scores: list[np.ndarray]  # per query, the retriever's scores of those candidates (descending)
    hidden: list[np.ndarray]  # per query, bool: the candidate is a hidden positive (ground truth)
    positive_scores: np.ndarray  # (Q,) the retriever's score of the labelled positive
    positive_ranks: np.ndarray  # (Q,) 1-based rank of the labelled positive in the full ranking, 0 = not retrieved

    def __post_init__(self) -> None:
        self._index = {q: i for i, q in enumerate(self.qids)}
        lengths = {"pids": len(self.pids), "scores": len(self.scores), "hidden": len(self.hidden),
                   "positive_scores": len(self.positive_scores), "positive_ranks": len(self.positive_ranks)}
        if any(n != len(self.qids) for n in lengths.values()):
            raise ValueError(f"a pool needs one entry per query ({len(self.qids)} qids), got {lengths}")
        for qid, pids, scores, hidden in zip(self.qids, self.pids, self.scores, self.hidden):
            if not len(pids) == len(scores) == len(hidden):
                raise ValueError(f"query {qid!r}: {len(pids)} candidates but {len(scores)} scores and "
                                 f"{len(hidden)} flags")
            if not np.isfinite(scores).all():
                raise ValueError(f"query {qid!r}: the candidate scores contain NaN or infinite values")
        if not np.isfinite(self.positive_scores).all():
            bad = [q for q, s in zip(self.qids, self.positive_scores) if not np.isfinite(s)]
            raise ValueError(f"the labelled positive's score is NaN or infinite for {len(bad)} queries, "
                             f"e.g. {bad[:3]}")

    def __len__(self) -> int:
        return len(self.qids)

    def index(self, qid: str) -> int:
        if qid not in self._index:
            raise KeyError(f"query {qid!r} is not in this {self.source} pool")
        return self._index[qid]

    def candidates(self, qid: str) -> tuple[list[str], np.ndarray, np.ndarray]:
        """(pids, scores, hidden flags) of one query's candidates, best first."""
        i = self.index(qid)
        return self.pids[i], self.scores[i], self.hidden[i]

    def false_negative_rate(self, depth: int | None = None) -> float:
        """Fraction of the top-``depth`` candidates (all when None) that are hidden positives."""
        flags = np.concatenate([h[:depth] for h in self.hidden])
        return float(flags.mean()) if len(flags) else 0.0

    def queries_with_false_negatives(self, depth: int | None = None) -> float:
        """Fraction of queries whose top-``depth`` candidates contain at least one hidden positive."""
        return float(np.mean([h[:depth].any() for h in self.hidden]))


def false_negative_rate(picks: Iterable[tuple[str, list[str]]], qrels: dict[str, dict[str, int]]) -> float:
    """Share of the picked negatives that are relevant by the ground truth ``qrels`` (0.0 if none picked).

    The one false-negative rate of the package: of what a sampler returned (``picks`` as
    ``(qid, negatives)``), not of a pool (``CandidatePool.false_negative_rate``).
    """
    flags = [pid in qrels.get(qid, {}) for qid, negatives in picks for pid in negatives]
    return sum(flags) / len(flags) if flags else 0.0


def pool_from_ranking(data: RetrievalData, source: str, qids: list[str], ranked_pids: list[list[str]],
                      ranked_scores: list[np.ndarray], positive_scores: np.ndarray,
                      depth: int) -> CandidatePool:
    """Remove each query's labelled positives from its ranking, keep ``depth``, flag hidden positives."""
    if depth < 1:
        raise ValueError(f"depth must be >= 1, got {depth}")
    if not len(qids) == len(ranked_pids) == len(ranked_scores) == len(positive_scores):
        raise ValueError(f"{len(qids)} qids but {len(ranked_pids)} rankings, {len(ranked_scores)} score "
                         f"lists and {len(positive_scores)} positive scores")
    pids, scores, hidden, ranks = [], [], [], []
    for qid, ranked, ranked_s in zip(qids, ranked_pids, ranked_scores):
        if qid not in data.positives:
            raise KeyError(f"query {qid!r} has no labelled positive in {data.name!r}")
        if len(ranked) != len(ranked_s):
            raise ValueError(f"query {qid!r}: {len(ranked)} ranked pids but {len(ranked_s)} scores")
        labelled = set(data.positives[qid])
        keep = [j for j, p in enumerate(ranked) if p not in labelled][:depth]
        ranks.append(next((j + 1 for j, p in enumerate(ranked) if p in labelled), 0))
        pids.append([ranked[j] for j in keep])
        scores.append(np.asarray(ranked_s, dtype=np.float32)[keep])
        truth = data.qrels.get(qid, {})
        hidden.append(np.array([truth.get(ranked[j], 0) > 0 for j in keep], dtype=bool))
    return CandidatePool(source, list(qids), pids, scores, hidden,
                         np.asarray(positive_scores, dtype=np.float32), np.asarray(ranks))


def _max_labels(data: RetrievalData, qids: list[str]) -> int:
    return max((len(data.positives[q]) for q in qids), default=0)


def dense_pool(model: BiEncoder, data: RetrievalData, split: str = "train", depth: int = 200,
               passage_vectors: np.ndarray | None = None, source: str = "dense") -> CandidatePool:
    """A pool ranked by a bi-encoder over ``data.search_pids(split)``.

    ``passage_vectors`` (aligned with ``search_pids(split)``) skips re-encoding the corpus.
    """
    qids, search_pids = data.qids(split), data.search_pids(split)
    if passage_vectors is None:
        passage_vectors = encode_corpus(model, data, search_pids)
    query_vectors = model.encode_queries(data.query_texts(qids))  # (Q, H)
    scores, rows = FlatIndex(passage_vectors).search(query_vectors, depth + _max_labels(data, qids))
    local = {p: i for i, p in enumerate(search_pids)}
    # score of the (first) labelled positive, computed directly even when it was not retrieved
    positive_rows = [local[data.positives[q][0]] for q in qids]
    positive_scores = np.einsum("qh,qh->q", query_vectors, passage_vectors[positive_rows])
    ranked = [[search_pids[r] for r in row if r >= 0] for row in rows]
    return pool_from_ranking(data, source, qids, ranked, list(scores), positive_scores, depth)


def bm25_pool(data: RetrievalData, split: str = "train", depth: int = 200) -> CandidatePool:
    """A pool ranked by BM25 over ``data.search_pids(split)`` (DPR's source of hard negatives)."""
    qids, search_pids = data.qids(split), data.search_pids(split)
    bm25 = BM25(data.passage_texts(search_pids))
    queries = data.query_texts(qids)
    scores, rows = bm25.search(queries, depth + _max_labels(data, qids))
    local = {p: i for i, p in enumerate(search_pids)}
    positive_scores = np.array([bm25.score(text, [local[data.positives[q][0]]])[0]
                                for q, text in zip(qids, queries)])
    ranked = [[search_pids[r] for r in row if r >= 0] for row in rows]
    ranked_scores = [s[r >= 0] for s, r in zip(scores, rows)]
    return pool_from_ranking(data, "bm25", qids, ranked, ranked_scores, positive_scores, depth)
