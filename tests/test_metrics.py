"""Tests for retrlab.metrics: hand-computed values, trec_eval tie order, pytrec_eval/ir_measures parity."""
from __future__ import annotations

import math
import random

import numpy as np
import pytest

from retrlab import metrics
from retrlab.metrics import (
    evaluate,
    metrics_table,
    ndcg,
    rank,
    read_trec_run,
    recall,
    reciprocal_rank,
    run_from_arrays,
    success,
    write_trec_run,
)

pytrec_eval = pytest.importorskip("pytrec_eval")
ir_measures = pytest.importorskip("ir_measures")


# --- hand-made examples ------------------------------------------------------------------------
# Ranking d1..d10 (distinct scores); relevant: d2 (grade 3) at rank 2, d5 (grade 1) at rank 5,
# and r9 (grade 2) which was not retrieved. d7 is judged non-relevant (grade 0).
HAND_RUN = {"q": {f"d{i}": 10.0 - i for i in range(1, 11)}}
HAND_QRELS = {"q": {"d2": 3, "d5": 1, "r9": 2, "d7": 0}}
RANKED = [f"d{i}" for i in range(1, 11)]


def test_rank_distinct_scores():
    assert rank(HAND_RUN["q"]) == RANKED


def test_reciprocal_rank_hand():
    rel = HAND_QRELS["q"]
    assert reciprocal_rank(RANKED, rel, k=10) == 0.5
    assert reciprocal_rank(RANKED, rel, k=1) == 0.0
    # first relevant at rank 11: outside MRR@10, inside MRR@11
    ranked = [f"x{i}" for i in range(10)] + ["d2"]
    assert reciprocal_rank(ranked, rel, k=10) == 0.0
    assert reciprocal_rank(ranked, rel, k=11) == pytest.approx(1 / 11)


def test_recall_hand():
    rel = HAND_QRELS["q"]
    assert recall(RANKED, rel, 1) == 0.0
    assert recall(RANKED, rel, 2) == pytest.approx(1 / 3)
    assert recall(RANKED, rel, 4) == pytest.approx(1 / 3)
    assert recall(RANKED, rel, 5) == pytest.approx(2 / 3)
    assert recall(RANKED, rel, 100) == pytest.approx(2 / 3)  # r9 is never retrieved
    assert recall(RANKED, {"d1": 0}, 10) == 0.0  # nothing relevant: 0, as trec_eval


def test_success_hand():
    rel = HAND_QRELS["q"]
    assert success(RANKED, rel, 1) == 0.0
    assert success(RANKED, rel, 2) == 1.0
    assert success(RANKED, rel, 20) == 1.0
    assert success([], rel, 5) == 0.0


def test_ndcg_hand_graded():
    rel = HAND_QRELS["q"]
    dcg = 3 / math.log2(3) + 1 / math.log2(6)  # d2 (3) at rank 2, d5 (1) at rank 5
    idcg = 3 / math.log2(2) + 2 / math.log2(3) + 1 / math.log2(4)  # grades 3, 2, 1
    assert ndcg(RANKED, rel, 10) == pytest.approx(dcg / idcg)
    assert ndcg(RANKED, rel, 10) == pytest.approx(2.2796410 / 4.7618595, abs=1e-6)  # 0.478729
    assert ndcg(RANKED, rel, 1) == 0.0
    assert ndcg(["d2", "r9", "d5"], rel, 10) == pytest.approx(1.0)
    assert ndcg(RANKED, {"d1": 0}, 10) == 0.0


def test_ndcg_ideal_is_cut_at_k():
    rel = {"a": 1, "b": 1, "c": 1}
    # @2: DCG = 1/log2(3) (b at rank 2); IDCG@2 = 1 + 1/log2(3)
    assert ndcg(["x", "b"], rel, 2) == pytest.approx((1 / math.log2(3)) / (1 + 1 / math.log2(3)))


def test_evaluate_hand_and_averaging():
    run = {
        "q1": {"a": 3.0, "b": 2.0, "c": 1.0},  # relevant b at rank 2
        "q2": {"x": 1.0, "y": 0.5},  # relevant y at rank 2 of 2 relevant
        "q9": {"a": 1.0},  # not in qrels: ignored
        "q4": {"a": 1.0},  # in qrels with no relevant doc: ignored
    }
    qrels = {
        "q1": {"b": 1},
        "q2": {"y": 2, "z": 1},
        "q3": {"a": 1},  # absent from the run: counts as 0
        "q4": {"a": 0},
    }
    res = evaluate(run, qrels, ["MRR@10", "R@1", "R@2", "Success@1", "Success@2", "nDCG@10"])
    assert res["MRR@10"] == pytest.approx((0.5 + 0.5 + 0) / 3)
    assert res["R@1"] == 0.0
    assert res["R@2"] == pytest.approx((1 + 0.5 + 0) / 3)
    assert res["Success@1"] == 0.0
    assert res["Success@2"] == pytest.approx(2 / 3)
    ndcg_q1 = 1 / math.log2(3)
    ndcg_q2 = (2 / math.log2(3)) / (2 + 1 / math.log2(3))
    assert res["nDCG@10"] == pytest.approx((ndcg_q1 + ndcg_q2) / 3)

    pq = evaluate(run, qrels, ["MRR@10", "R@2"], per_query=True)
    assert set(pq) == {"q1", "q2", "q3"}
    assert pq["q3"] == {"MRR@10": 0.0, "R@2": 0.0}
    assert pq["q2"] == {"MRR@10": 0.5, "R@2": 0.5}


def test_evaluate_default_measures_and_names():
    run = {"q": {"a": 1.0}}
    qrels = {"q": {"a": 1}}
    assert evaluate(run, qrels) == {"MRR@10": 1.0, "R@20": 1.0, "R@100": 1.0, "nDCG@10": 1.0}
    res = evaluate(run, qrels, ["Recall@5", "rr@3", "NDCG@5", "success@3"])
    assert res == {"Recall@5": 1.0, "rr@3": 1.0, "NDCG@5": 1.0, "success@3": 1.0}
    assert evaluate(run, qrels, "MRR@10") == {"MRR@10": 1.0}  # a single name, not its letters


# --- ties: trec_eval order ---------------------------------------------------------------------
def test_rank_ties_docno_descending():
    # insertion order a, b; equal scores -> trec_eval puts "b" first
    assert rank({"a": 1.0, "b": 1.0}) == ["b", "a"]
    # string, not numeric, comparison: "d9" > "d10"
    assert rank({"d10": 1.0, "d9": 1.0, "d2": 2.0}) == ["d2", "d9", "d10"]


def _trec_eval_order(scores: dict[str, float]) -> list[str]:
    """trec_eval's ranking, read back from pytrec_eval: with a single relevant doc d, recip_rank = 1/rank(d)."""
    qrels = {f"q_{pid}": {pid: 1} for pid in scores}
    run = {f"q_{pid}": dict(scores) for pid in scores}
    out = pytrec_eval.RelevanceEvaluator(qrels, {"recip_rank"}).evaluate(run)
    position = {pid: round(1 / out[f"q_{pid}"]["recip_rank"]) for pid in scores}
    return sorted(scores, key=position.__getitem__)


def test_rank_ties_equal_trec_eval():
    scores = {"a": 1.0, "b": 1.0, "d10": 0.5, "d9": 0.5, "d1": 0.5, "D2": 0.5, "z": 2.0, "é": 0.5, "c": 0.0}
    expected = _trec_eval_order(scores)
    assert expected[0] == "z"  # sanity check of the helper
    assert rank(scores) == expected == ["z", "b", "a", "é", "d9", "d10", "d1", "D2", "c"]


def test_tie_metrics_equal_pytrec_eval():
    run = {"q": {"a": 1.0, "b": 1.0, "c": 1.0}}
    qrels = {"q": {"a": 2, "c": 0}}
    ours = evaluate(run, qrels, ["MRR@10", "R@2", "nDCG@10", "Success@1"], per_query=True)["q"]
    ref = pytrec_eval.RelevanceEvaluator(qrels, {"recip_rank", "recall.2", "ndcg_cut.10", "success.1"}).evaluate(run)["q"]
    # trec_eval order is c, b, a: the relevant doc is last
    assert ours["MRR@10"] == ref["recip_rank"] == pytest.approx(1 / 3)
    assert ours["R@2"] == ref["recall_2"] == 0.0
    assert ours["nDCG@10"] == pytest.approx(ref["ndcg_cut_10"]) == pytest.approx(0.5)
    assert ours["Success@1"] == ref["success_1"] == 0.0


# --- parity with pytrec_eval and ir_measures on a random run with many ties ---------------------
def _random_case(seed: int = 0):
    rng = random.Random(seed)
    qrels, run = {}, {}
    for q in range(50):
        qid = f"q{q}"
        # unpadded pids so that ties exercise string order ("p9" > "p10" > "p1")
        docs = [f"p{rng.randrange(400)}" for _ in range(200)]
        scores = {d: round(rng.random(), 1) for d in docs}  # ~11 distinct values: many ties
        pool = list(scores)
        if q % 7 == 3:
            # relevant docs never retrieved
            rel = {f"unretrieved{q}_{i}": rng.randint(1, 3) for i in range(2)}
        else:
            rel = {d: rng.randint(1, 3) for d in rng.sample(pool, rng.randint(1, 4))}
        for d in rng.sample(pool, 5):
            rel.setdefault(d, 0)
        qrels[qid] = rel
        if qid != "q5":  # q5 is judged but absent from the run
            run[qid] = scores
    run["extra"] = {"p1": 1.0, "p2": 1.0}  # in the run, not in the qrels
    return qrels, run


def _truncate(run, k):
    return {qid: {pid: scores[pid] for pid in rank(scores)[:k]} for qid, scores in run.items()}


def test_parity_with_pytrec_eval_per_query_and_mean():
    qrels, run = _random_case()
    measures = ["MRR@10", "R@20", "R@100", "nDCG@10", "Success@1"]
    ours = evaluate(run, qrels, measures, per_query=True)
    mean = evaluate(run, qrels, measures)
    ev = pytrec_eval.RelevanceEvaluator(qrels, {"recall.20,100", "ndcg_cut.10", "success.1"})
    ref = ev.evaluate(run)
    ref_rr = pytrec_eval.RelevanceEvaluator(qrels, {"recip_rank"}).evaluate(_truncate(run, 10))
    keys = {"R@20": "recall_20", "R@100": "recall_100", "nDCG@10": "ndcg_cut_10", "Success@1": "success_1"}

    # pytrec_eval omits queries absent from the run (q5) and queries absent from the qrels (extra)
    assert "q5" not in ref and "extra" not in ref and len(ref) == len(qrels) - 1
    assert set(ours) == set(qrels)
    assert ours["q5"] == dict.fromkeys(measures, 0.0)
    # the test data must exercise what it claims to
    assert any(0 < ours[q]["R@20"] < 1 for q in ours)
    assert any(ours[q]["MRR@10"] == 0 for q in ours if q != "q5")
    assert len({ours[q]["MRR@10"] for q in ours}) > 3
    for qid in ref_rr:
        if qid in qrels:
            assert ours[qid]["MRR@10"] == pytest.approx(ref_rr[qid]["recip_rank"], abs=1e-12), qid
            for m, key in keys.items():
                assert ours[qid][m] == pytest.approx(ref[qid][key], abs=1e-12), (qid, m)
    # means: absent q5 counts as 0 over all |qrels| queries
    n = len(qrels)
    assert mean["MRR@10"] == pytest.approx(sum(ref_rr[q]["recip_rank"] for q in qrels if q in ref_rr) / n)
    for m, key in keys.items():
        assert mean[m] == pytest.approx(sum(ref[q][key] for q in qrels if q in ref) / n), m


def _untie(run):
    """The same rankings with distinct scores (-rank in trec_eval order): no tie rule can differ."""
    return {qid: {pid: -float(i) for i, pid in enumerate(rank(scores))} for qid, scores in run.items()}


def test_parity_with_ir_measures():
    from ir_measures import RR, R, Success, nDCG

    qrels, run = _random_case(seed=1)
    ours = evaluate(run, qrels, ["MRR@10", "R@20", "nDCG@10", "Success@1"])
    # R, nDCG and Success go to ir_measures' pytrec_eval provider: equal on the tied run itself
    ref = ir_measures.calc_aggregate([R @ 20, nDCG @ 10, Success @ 1], qrels, run)
    assert ours["R@20"] == pytest.approx(ref[R @ 20], abs=1e-12)
    assert ours["nDCG@10"] == pytest.approx(ref[nDCG @ 10], abs=1e-12)
    assert ours["Success@1"] == pytest.approx(ref[Success @ 1], abs=1e-12)
    # the four measures of the brief in one call, on the untied run: all equal
    ref = ir_measures.calc_aggregate([RR @ 10, R @ 20, nDCG @ 10, Success @ 1], qrels, _untie(run))
    assert ours == pytest.approx({"MRR@10": ref[RR @ 10], "R@20": ref[R @ 20], "nDCG@10": ref[nDCG @ 10],
                                  "Success@1": ref[Success @ 1]}, abs=1e-12)
    # RR without cut-off goes to pytrec_eval: equal on the tied run truncated to its top 10
    assert ours["MRR@10"] == pytest.approx(ir_measures.calc_aggregate([RR], qrels, _truncate(run, 10))[RR], abs=1e-12)

    per_query = evaluate(run, qrels, ["MRR@10"], per_query=True)
    values = list(ir_measures.iter_calc([RR @ 10], qrels, _untie(run)))
    assert {m.query_id for m in values} == set(qrels)  # q5 (absent from the run) is scored, as 0
    for m in values:
        assert per_query[m.query_id]["MRR@10"] == pytest.approx(m.value, abs=1e-12), m.query_id


def test_ir_measures_rr_cutoff_breaks_ties_differently():
    """Pitfall: ir_measures serves RR@k with its 'msmarco' provider, which breaks ties by docno
    *ascending* -- not trec_eval's order. Same documents, same scores, different MRR@10."""
    from ir_measures import RR

    run = {"q": {"a": 1.0, "b": 1.0}}
    qrels = {"q": {"a": 1}}
    assert evaluate(run, qrels, ["MRR@10"]) == {"MRR@10": 0.5}  # trec_eval: b, a
    assert pytrec_eval.RelevanceEvaluator(qrels, {"recip_rank"}).evaluate(run)["q"]["recip_rank"] == 0.5
    provider_order = ir_measures.calc_aggregate([RR @ 10], qrels, run)[RR @ 10]
    assert provider_order in (0.5, 1.0)  # 1.0 with ir_measures 0.4.3 (ties sorted a, b)
    assert ir_measures.calc_aggregate([RR @ 10], qrels, _untie(run))[RR @ 10] == 0.5


def test_queries_without_relevant_docs_are_not_averaged():
    run = {"q1": {"a": 1.0}, "q2": {"b": 1.0}}
    qrels = {"q1": {"a": 1}, "q2": {"b": 0}}
    assert evaluate(run, qrels, ["R@10"]) == {"R@10": 1.0}
    # ir_measures (like trec_eval) averages q2 in as a 0
    assert ir_measures.calc_aggregate([ir_measures.R @ 10], qrels, run)[ir_measures.R @ 10] == 0.5


# --- run_from_arrays ---------------------------------------------------------------------------
def test_run_from_arrays():
    pids = ["p0", "p1", "p2"]
    scores = np.array([[0.9, 0.5, 0.0], [0.7, -1.0, -1.0]], dtype=np.float32)
    ids = np.array([[2, 0, -1], [1, -1, -1]])
    run = run_from_arrays(["qa", "qb"], pids, scores, ids)
    assert run == {"qa": {"p2": pytest.approx(0.9), "p0": 0.5}, "qb": {"p1": pytest.approx(0.7)}}
    assert all(type(s) is float for s in run["qa"].values())
    with pytest.raises(ValueError, match="shape"):
        run_from_arrays(["qa"], pids, scores, ids)


# --- TREC run files ----------------------------------------------------------------------------
def test_trec_run_round_trip(tmp_path):
    run = {"q2": {"d10": 0.1, "d9": 0.1, "x": 1e-5}, "q1": {"a": 1e300, "b": -3.25}}
    path = write_trec_run(run, tmp_path / "sub" / "run.trec", tag="exp1")
    lines = path.read_text().splitlines()
    assert lines == [
        "q1 Q0 a 1 1e+300 exp1",
        "q1 Q0 b 2 -3.25 exp1",
        "q2 Q0 d9 1 0.1 exp1",
        "q2 Q0 d10 2 0.1 exp1",
        "q2 Q0 x 3 1e-05 exp1",
    ]
    assert read_trec_run(path) == run
    assert [p.name for p in path.parent.iterdir()] == ["run.trec"]  # no temporary left behind

    write_trec_run(run, path, depth=1)
    assert read_trec_run(path) == {"q1": {"a": 1e300}, "q2": {"d9": 0.1}}


def test_write_trec_run_rejects_whitespace_ids(tmp_path):
    with pytest.raises(ValueError, match="whitespace"):
        write_trec_run({"q 1": {"a": 1.0}}, tmp_path / "r.trec")
    with pytest.raises(ValueError, match="depth|cut-off"):
        write_trec_run({"q": {"a": 1.0}}, tmp_path / "r.trec", depth=0)


@pytest.mark.parametrize(
    "bad_line, message",
    [
        ("q1 Q0 d1 1 0.5", "expected 6 fields"),
        ("q1 Q0 d1 one 0.5 tag", "rank must be an integer"),
        ("q1 Q0 d1 1 high tag", "score a number"),
        ("q1 Q0 d1 1 nan tag", "score 'nan' of qid 'q1' pid 'd1' is not a finite number"),
        ("q1 Q0 d0 2 0.5 tag", "appears twice"),
    ],
)
def test_read_trec_run_malformed(tmp_path, bad_line, message):
    path = tmp_path / "bad.trec"
    path.write_text(f"q1 Q0 d0 1 0.9 tag\n\n{bad_line}\n")
    with pytest.raises(ValueError, match=message) as err:
        read_trec_run(path)
    assert "bad.trec:3" in str(err.value)


# --- validation --------------------------------------------------------------------------------
def test_nan_score_names_query_and_doc():
    with pytest.raises(ValueError, match=r"qid 'q1' pid 'd7' is NaN"):
        evaluate({"q1": {"d1": 1.0, "d7": float("nan")}}, {"q1": {"d1": 1}})
    with pytest.raises(ValueError, match="NaN"):
        rank({"d1": np.float32("nan")})


@pytest.mark.parametrize("name", ["MAP@10", "MRR", "R@x", "nDCG10", "", "P@5"])
def test_unknown_measure(name):
    with pytest.raises(ValueError, match="unknown measure"):
        evaluate({"q": {"a": 1.0}}, {"q": {"a": 1}}, [name])


@pytest.mark.parametrize("name", ["R@0", "MRR@-1"])
def test_measure_cutoff_below_one(name):
    with pytest.raises(ValueError, match="k must be >= 1"):
        evaluate({"q": {"a": 1.0}}, {"q": {"a": 1}}, [name])
    with pytest.raises(ValueError, match="k must be"):
        recall(["a"], {"a": 1}, 0)


@pytest.mark.parametrize(
    "run, error",
    [
        ([("q", "a", 1.0)], TypeError),
        ({"q": [("a", 1.0)]}, TypeError),
        ({"q": {"a": "high"}}, TypeError),
        ({1: {"a": 1.0}}, TypeError),
    ],
)
def test_bad_run(run, error):
    with pytest.raises(error, match="run|score|qid"):
        evaluate(run, {"q": {"a": 1}})


def test_bad_qrels():
    with pytest.raises(ValueError, match="qrels are empty"):
        evaluate({"q": {"a": 1.0}}, {})
    with pytest.raises(ValueError, match="no query in the qrels has a relevant"):
        evaluate({"q": {"a": 1.0}}, {"q": {"a": 0}})
    with pytest.raises(TypeError, match="grade"):
        evaluate({"q": {"a": 1.0}}, {"q": {"a": 0.5}})


def test_disjoint_query_ids_warn():
    with pytest.warns(UserWarning, match="no query id"):
        assert evaluate({"1": {"a": 1.0}}, {"q1": {"a": 1}}, ["R@10"]) == {"R@10": 0.0}


# --- metrics_table -----------------------------------------------------------------------------
def test_metrics_table():
    table = metrics_table({"bm25": {"MRR@10": 0.187, "R@100": 0.6}, "dense-long-name": {"MRR@10": 0.33}})
    assert table.splitlines() == [
        "system           MRR@10   R@100",
        "bm25             0.1870  0.6000",
        "dense-long-name  0.3300       -",
    ]
    with pytest.raises(ValueError):
        metrics_table({})


def test_module_docstring_states_conventions():
    doc = metrics.__doc__
    assert "trec_eval" in doc and "MS MARCO" in doc and "#22" in doc


def test_negative_grades_give_no_gain_like_trec_eval():
    run = {"q": {"spam": 3.0, "good": 1.0}}
    qrels = {"q": {"spam": -1, "good": 2}}
    ours = evaluate(run, qrels, ["nDCG@10", "MRR@10", "R@1"], per_query=True)["q"]
    ref = pytrec_eval.RelevanceEvaluator(qrels, {"ndcg_cut.10"}).evaluate(run)["q"]
    assert ours["nDCG@10"] == pytest.approx(ref["ndcg_cut_10"], abs=1e-12)
    assert ours["nDCG@10"] == pytest.approx(1 / math.log2(3))  # not (-1 + 2/log2(3)) / 2
    assert ours["MRR@10"] == 0.5 and ours["R@1"] == 0.0
