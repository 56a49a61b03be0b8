"""Retrieval metrics that give the same numbers as trec_eval, in a few readable functions.

Data shapes (the ones pytrec_eval and ir_measures use):

* a **run** is ``{qid: {pid: score}}`` — higher score = better;
* **qrels** are ``{qid: {pid: grade}}`` — integer grades, a document is *relevant* when ``grade > 0``.

Conventions, and where they come from:

* **Ranking order** is trec_eval's: score descending, ties broken by **docno descending** (string
  comparison). trec_eval ignores the rank column of a run file and re-sorts this way (trec_eval
  issue #22; pytrec_eval #53/#56, ir_measures #18, BEIR #105 all trip over it). So two documents with
  equal scores are *not* kept in file order: ``"d9"`` is ranked above ``"d10"`` because ``"d9" >
  "d10"`` as strings. If order matters, give distinct scores (e.g. ``-rank``). See :func:`rank`.
* **MRR@k** — reciprocal rank of the first relevant document within the top k, 0 if none; this is
  the MS MARCO passage metric (``msmarco_eval.py: compute_metrics``, MRR@10). trec_eval's
  ``recip_rank`` has no cut-off; it equals MRR@k on a run truncated to its top k.
* **R@k** is TREC recall (trec_eval ``recall_k``): the *fraction* of relevant documents found in the
  top k. **Success@k** (trec_eval ``success_k``; DPR's "top-k accuracy", often also called R@k in
  NQ papers!) is 1 if *any* relevant document is in the top k.
* **nDCG@k** is trec_eval's ``ndcg_cut_k``: linear gain (the grade itself), ``log2(i+1)``
  discount, ideal DCG from the judged grades. Grades <= 0 give gain 0.
* **Averaging** (:func:`evaluate`): the mean is over the queries **in the qrels that have at least
  one relevant document**. A query with no entry in the run counts as 0 (as ``trec_eval -c`` and the
  MS MARCO script, which divides by the number of qrels queries). Queries in the run but not in the
  qrels are ignored. Note: pytrec_eval silently *omits* queries absent from the run (so its mean is
  over fewer queries and looks better), and trec_eval/ir_measures average queries whose judgements
  are all 0 in as zeros; we leave those out because their recall and nDCG are undefined (0/0).
* **Other tools' tie rules differ.** The MS MARCO script ranks by *file order*; ir_measures (0.4.3)
  computes ``RR@k`` with its "msmarco" provider, which breaks ties by docno *ascending*. On runs
  with tied scores their MRR@10 can differ from trec_eval's and ours; with distinct scores (or a
  file written by :func:`write_trec_run`, which is in trec_eval order) all agree.
"""
from __future__ import annotations

import math
import numbers
import re
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path

import numpy as np

from retrlab.cache import atomic_write_text
from retrlab.constants import MEASURES

Run = dict[str, dict[str, float]]
Qrels = dict[str, dict[str, int]]


# --- ranking ---------------------------------------------------------------------------------
def rank(run_for_query: Mapping[str, float]) -> list[str]:
    """The pids of one query in trec_eval order: score descending, then pid descending.

    The tie rule is the pitfall: trec_eval does *not* keep file order (or insertion order) for
    equal scores, it sorts them by docno in *descending* string order (``strcmp``; Python compares
    ``str`` by code point, which is the same order as comparing UTF-8 bytes). So for
    ``{"d10": 1.0, "d9": 1.0}`` the ranking is ``["d9", "d10"]``.
    """
    for pid, score in run_for_query.items():
        if isinstance(score, numbers.Real) and math.isnan(score):
            raise ValueError(f"score of pid {pid!r} is NaN")
    return sorted(run_for_query, key=lambda pid: (run_for_query[pid], pid), reverse=True)


# --- per-query measures ----------------------------------------------------------------------
def _check_k(k: int) -> None:
    if isinstance(k, bool) or not isinstance(k, numbers.Integral) or k < 1:
        raise ValueError(f"cut-off k must be an integer >= 1, got {k!r}")


def _n_relevant(rel: Mapping[str, int]) -> int:
    return sum(1 for grade in rel.values() if grade > 0)


def reciprocal_rank(ranked: Sequence[str], rel: Mapping[str, int], k: int = 10) -> float:
    """``1 / rank`` of the first relevant document among the top ``k``, else 0.

    ``RR@k = 1/min{i <= k : rel(L[i]) > 0}`` (0 when the set is empty). Averaged over queries this
    is MRR@k (MS MARCO passage: MRR@10).
    """
    _check_k(k)
    for i, pid in enumerate(ranked[:k], start=1):
        if rel.get(pid, 0) > 0:
            return 1.0 / i
    return 0.0


def recall(ranked: Sequence[str], rel: Mapping[str, int], k: int) -> float:
    """TREC recall: ``R@k = |relevant ∩ top-k| / |relevant|`` (0 when nothing is relevant)."""
    _check_k(k)
    n_rel = _n_relevant(rel)
    if n_rel == 0:
        return 0.0
    found = sum(1 for pid in ranked[:k] if rel.get(pid, 0) > 0)
    return found / n_rel


def success(ranked: Sequence[str], rel: Mapping[str, int], k: int) -> float:
    """``Success@k = 1`` if any relevant document is in the top ``k``, else 0 (DPR's top-k accuracy)."""
    _check_k(k)
    return float(any(rel.get(pid, 0) > 0 for pid in ranked[:k]))


def _dcg(gains: Iterable[float]) -> float:
    return sum(g / math.log2(i + 1) for i, g in enumerate(gains, start=1))


def ndcg(ranked: Sequence[str], rel: Mapping[str, int], k: int = 10) -> float:
    """trec_eval's ``ndcg_cut_k``: ``nDCG@k = DCG@k / IDCG@k``.

    ``DCG@k = sum_{i=1..k} g(L[i]) / log2(i + 1)`` with linear gain ``g = max(grade, 0)`` (unjudged
    documents have gain 0); ``IDCG@k`` is the DCG of the judged grades sorted descending. Returns 0
    when no judged document has a positive grade.
    """
    _check_k(k)
    ideal = _dcg(sorted((max(g, 0) for g in rel.values()), reverse=True)[:k])
    if ideal == 0:
        return 0.0
    return _dcg(max(rel.get(pid, 0), 0) for pid in ranked[:k]) / ideal


# --- validation ------------------------------------------------------------------------------
def _check_run(run: object) -> None:
    if not isinstance(run, Mapping):
        raise TypeError(f"a run must be a dict {{qid: {{pid: score}}}}, got {type(run).__name__}")
    for qid, scores in run.items():
        if not isinstance(qid, str):
            raise TypeError(f"run qids must be str, got {qid!r} ({type(qid).__name__})")
        if not isinstance(scores, Mapping):
            raise TypeError(
                f"a run must be a dict of dicts {{qid: {{pid: score}}}}; run[{qid!r}] is "
                f"{type(scores).__name__}"
            )
        for pid, score in scores.items():
            if not isinstance(pid, str):
                raise TypeError(f"run pids must be str, got {pid!r} in query {qid!r}")
            if isinstance(score, bool) or not isinstance(score, numbers.Real):
                raise TypeError(f"score of qid {qid!r} pid {pid!r} is not a number: {score!r}")
            if math.isnan(score):
                raise ValueError(f"score of qid {qid!r} pid {pid!r} is NaN")


def _check_qrels(qrels: object) -> None:
    if not isinstance(qrels, Mapping):
        raise TypeError(f"qrels must be a dict {{qid: {{pid: grade}}}}, got {type(qrels).__name__}")
    if not qrels:
        raise ValueError("qrels are empty: there is nothing to evaluate against")
    for qid, rel in qrels.items():
        if not isinstance(qid, str):
            raise TypeError(f"qrels qids must be str, got {qid!r} ({type(qid).__name__})")
        if not isinstance(rel, Mapping):
            raise TypeError(f"qrels must be a dict of dicts; qrels[{qid!r}] is {type(rel).__name__}")
        for pid, grade in rel.items():
            if not isinstance(pid, str):
                raise TypeError(f"qrels pids must be str, got {pid!r} in query {qid!r}")
            if isinstance(grade, bool) or not isinstance(grade, numbers.Integral):
                raise TypeError(f"grade of qid {qid!r} pid {pid!r} must be an int, got {grade!r}")


# --- measure names ---------------------------------------------------------------------------
_MEASURES = {
    "mrr": reciprocal_rank,
    "rr": reciprocal_rank,
    "r": recall,
    "recall": recall,
    "success": success,
    "ndcg": ndcg,
}
_NAME = re.compile(r"^\s*([A-Za-z]+)\s*@\s*([+-]?\d+)\s*$")


def parse_measure(name: str) -> tuple[Callable[..., float], int]:
    """``"MRR@10"`` -> ``(reciprocal_rank, 10)``. Known names (any case): MRR/RR, R/Recall, Success, nDCG."""
    match = _NAME.match(name) if isinstance(name, str) else None
    if match is None or match.group(1).lower() not in _MEASURES:
        raise ValueError(
            f"unknown measure {name!r}; expected one of MRR@k, RR@k, R@k, Recall@k, Success@k, "
            f"nDCG@k (e.g. 'MRR@10')"
        )
    k = int(match.group(2))
    if k < 1:
        raise ValueError(f"measure {name!r}: cut-off k must be >= 1")
    return _MEASURES[match.group(1).lower()], k


# --- evaluation ------------------------------------------------------------------------------
def evaluate(
    run: Mapping[str, Mapping[str, float]],
    qrels: Mapping[str, Mapping[str, int]],
    measures: Sequence[str] = MEASURES,
    per_query: bool = False,
) -> dict[str, float] | dict[str, dict[str, float]]:
    """Evaluate a run: ``{measure: mean}``, or ``{qid: {measure: value}}`` when ``per_query``.

    ``mean = (1/|Q|) sum_{q in Q} m(q)`` where ``Q`` = the qrels queries with at least one relevant
    document. A query of ``Q`` missing from the run scores 0 on every measure; run queries not in
    the qrels are ignored. The per-query dict has the same shape as pytrec_eval's output.
    """
    if isinstance(measures, str):
        measures = (measures,)
    parsed = [(name, *parse_measure(name)) for name in measures]
    _check_run(run)
    _check_qrels(qrels)
    queries = [qid for qid, rel in qrels.items() if _n_relevant(rel) > 0]
    if not queries:
        raise ValueError("no query in the qrels has a relevant document (grade > 0)")
    if run and not any(qid in run for qid in queries):
        warnings.warn("the run shares no query id with the qrels: every score will be 0", stacklevel=2)

    results = {}
    for qid in queries:
        ranked = rank(run.get(qid, {}))
        results[qid] = {name: fn(ranked, qrels[qid], k) for name, fn, k in parsed}
    if per_query:
        return results
    return {name: sum(r[name] for r in results.values()) / len(results) for name, _, _ in parsed}


def run_from_arrays(
    qids: Sequence[str], pids: Sequence[str], scores: np.ndarray, ids: np.ndarray
) -> Run:
    """Build a run from a search result: row ``i`` of ``scores``/``ids`` belongs to ``qids[i]``.

    ``ids[i, j]`` is a row index into ``pids``; ``-1`` means "no result" and is skipped.
    """
    scores, ids = np.asarray(scores), np.asarray(ids)
    if scores.shape != ids.shape or scores.ndim != 2 or len(qids) != len(ids):
        raise ValueError(
            f"expected scores and ids of shape (len(qids), k) = ({len(qids)}, k); got "
            f"scores {scores.shape}, ids {ids.shape}"
        )
    return {
        str(qid): {str(pids[j]): float(s) for j, s in zip(row_ids, row_scores) if j >= 0}
        for qid, row_ids, row_scores in zip(qids, ids.tolist(), scores.tolist())
    }


# --- TREC run files --------------------------------------------------------------------------
def check_trec_fields(tag: str, qids: Iterable[str] = (), pids: Iterable[str] = ()) -> None:
    """Raise ``ValueError`` naming the first tag, qid or pid a TREC run line cannot hold.

    A run line is split on whitespace, so each field must be non-empty and free of it. The command
    line calls this before a long evaluation whose run is to be written.
    """
    if not isinstance(tag, str) or not tag or any(c.isspace() for c in tag):
        raise ValueError(f"tag must be a non-empty string without whitespace, got {tag!r}")
    for name, values in (("qid", qids), ("pid", pids)):
        for value in values:
            if not value or any(c.isspace() for c in value):
                raise ValueError(f"{name} {value!r} is empty or contains whitespace: a TREC run "
                                 f"file cannot hold it")


def write_trec_run(
    run: Mapping[str, Mapping[str, float]],
    path: str | Path,
    tag: str = "retrlab",
    depth: int | None = None,
) -> Path:
    """Write ``qid Q0 pid rank score tag`` lines (queries sorted, each in trec_eval order), atomically.

    ``depth`` keeps only the top ``depth`` documents per query. Scores are written with ``repr`` so
    that :func:`read_trec_run` gives back exactly the same floats; an infinite score, which it
    would refuse, is refused here.
    """
    _check_run(run)
    if depth is not None:
        _check_k(depth)
    check_trec_fields(tag, run, (pid for scores in run.values() for pid in scores))
    lines = []
    for qid in sorted(run):
        for i, pid in enumerate(rank(run[qid])[:depth], start=1):
            if not math.isfinite(run[qid][pid]):
                raise ValueError(f"score of qid {qid!r} pid {pid!r} is {run[qid][pid]}: not a finite number")
            lines.append(f"{qid} Q0 {pid} {i} {float(run[qid][pid])!r} {tag}\n")
    return atomic_write_text(path, "".join(lines))


def _trec_lines(path: str | Path) -> Iterable[tuple[str, str]]:
    """(``file:line``, line) for each non-blank line, decoded one by one.

    A byte that is not UTF-8 is reported with its line (a text-mode file decodes ahead in blocks);
    a UTF-8 byte-order mark at the start is dropped, as the BEIR loader does.
    """
    with open(path, "rb") as f:
        for lineno, raw in enumerate(f, start=1):
            where = f"{path}:{lineno}"
            try:
                line = raw.decode("utf-8-sig" if lineno == 1 else "utf-8")
            except UnicodeDecodeError as e:
                raise ValueError(f"{where}: not UTF-8 text ({e.reason} at byte {e.start} of the line)") from None
            if line.strip():
                yield where, line


def read_trec_run(path: str | Path) -> Run:
    """Read a TREC run file (``qid Q0 pid rank score tag`` per line) into ``{qid: {pid: score}}``.

    The rank column is checked to be an integer but otherwise ignored, as trec_eval does: order
    comes from the scores. Blank lines are skipped; anything else malformed (bad UTF-8, a score that
    is NaN or infinite, such as ``inf`` or ``1e400``) raises ``ValueError`` naming the file and line.
    A file with no run line at all is an error too: it would evaluate to zeros without a word.
    """
    run: Run = {}
    for where, line in _trec_lines(path):
        fields = line.split()
        if len(fields) != 6:
            raise ValueError(
                f"{where}: expected 6 fields 'qid Q0 pid rank score tag', got {len(fields)}: "
                f"{line.rstrip()!r}"
            )
        qid, _, pid, rank_str, score_str, _ = fields
        try:
            int(rank_str)
            score = float(score_str)
        except ValueError:
            raise ValueError(
                f"{where}: rank must be an integer and score a number: {line.rstrip()!r}"
            ) from None
        if not math.isfinite(score):
            raise ValueError(f"{where}: score {score_str!r} of qid {qid!r} pid {pid!r} is not a finite number")
        if pid in run.setdefault(qid, {}):
            raise ValueError(f"{where}: pid {pid!r} appears twice for qid {qid!r}")
        run[qid][pid] = score
    if not run:
        raise ValueError(f"{path}: the run file is empty (no 'qid Q0 pid rank score tag' line)")
    return run


# --- display ---------------------------------------------------------------------------------
def metrics_table(results: Mapping[str, Mapping[str, float]], digits: int = 4) -> str:
    """An aligned text table: one row per system, one column per measure (``-`` when missing).

    >>> print(metrics_table({"bm25": {"MRR@10": 0.187}, "dpr": {"MRR@10": 0.264}}))
    system  MRR@10
    bm25    0.1870
    dpr     0.2640
    """
    if not results:
        raise ValueError("no results to show")
    columns: list[str] = []
    for scores in results.values():
        columns += [m for m in scores if m not in columns]
    rows = [["system", *columns]]
    for system, scores in results.items():
        rows.append([str(system), *(f"{scores[m]:.{digits}f}" if m in scores else "-" for m in columns)])
    widths = [max(len(row[c]) for row in rows) for c in range(len(rows[0]))]
    return "\n".join(
        "  ".join(cell.ljust(w) if c == 0 else cell.rjust(w) for c, (cell, w) in enumerate(zip(row, widths)))
        for row in rows
    )
