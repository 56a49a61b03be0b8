"""wiki-car's three TREC CAR qrels flavours and the heading relation, on a hand-made article."""
import pytest

from retrlab.data.dataset import RetrievalData
from retrlab.data.wikicar import QRELS_FLAVOURS, flavour_qrels, relation, with_qrels_flavour

SECTIONS = {  # pid -> heading path; two articles
    "a-000": "A", "a-001": "A / History", "a-002": "A / History", "a-003": "A / History / Early",
    "a-004": "A / History / Late", "a-005": "A / Geography", "b-000": "B", "b-001": "B / History",
}


def toy() -> RetrievalData:
    corpus = {p: {"title": s.split(" / ")[0], "text": f"text {p}", "article": s.split(" / ")[0],
                  "section": s, "lead": " / " not in s} for p, s in SECTIONS.items()}
    queries = {"a-q0": "A / History", "a-q1": "A / History / Early", "a-q2": "A / Geography",
               "b-q0": "B / History"}
    qrels = {"a-q0": {"a-001": 1, "a-002": 1}, "a-q1": {"a-003": 1}, "a-q2": {"a-005": 1},
             "b-q0": {"b-001": 1}}
    positives = {"a-q0": ["a-001"], "a-q1": ["a-003"], "a-q2": ["a-005"], "b-q0": ["b-001"]}
    return RetrievalData("toy", corpus, queries, qrels, positives,
                         {"train": ["a-q0", "a-q1", "a-q2", "b-q0"], "dev": [], "test": []})


def test_relation_names_every_place_a_passage_can_sit():
    data = toy()
    got = {p: relation(data, "a-q1", p) for p in SECTIONS}  # query: A / History / Early
    assert got == {"a-000": "lead", "a-001": "parent", "a-002": "parent", "a-003": "relevant",
                   "a-004": "sibling", "a-005": "other-section", "b-000": "other-article",
                   "b-001": "other-article"}
    assert relation(data, "a-q0", "a-003") == "child"
    assert relation(data, "a-q0", "a-002") == "relevant"  # a hidden positive


def test_toplevel_qrels_hold_the_whole_top_level_section_and_article_qrels_the_article():
    data = toy()
    top = flavour_qrels(data, "toplevel")
    assert set(top["a-q1"]) == {"a-001", "a-002", "a-003", "a-004"}  # parent, itself, sibling
    assert set(top["a-q0"]) == {"a-001", "a-002", "a-003", "a-004"}
    assert set(top["a-q2"]) == {"a-005"}
    art = flavour_qrels(data, "article")
    assert set(art["a-q2"]) == {f"a-00{i}" for i in range(6)}  # the lead included
    assert set(art["b-q0"]) == {"b-000", "b-001"}
    assert flavour_qrels(data, "hierarchical") == data.qrels


def test_every_flavour_keeps_labels_and_contains_the_hierarchical_truth():
    data = toy()
    for flavour in QRELS_FLAVOURS:
        other = with_qrels_flavour(data, flavour)
        assert other.positives == data.positives and other.splits == data.splits
        assert all(set(data.qrels[q]) <= set(other.qrels[q]) for q in data.queries)
    assert with_qrels_flavour(data, "toplevel").hidden_positives("a-q1") == {"a-001", "a-002", "a-004"}


def test_unknown_flavour_is_named():
    with pytest.raises(ValueError, match="qrels flavour must be one of"):
        flavour_qrels(toy(), "section")


def test_load_wikicar_refuses_an_unknown_flavour_before_building(monkeypatch):
    from retrlab.data import wikicar

    monkeypatch.setattr(wikicar, "cached_dir", lambda *a, **k: pytest.fail("must not build"))
    with pytest.raises(ValueError, match="qrels must be one of"):
        wikicar.load_wikicar(qrels="paragraph")
