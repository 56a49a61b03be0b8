"""BFS and WLP pair construction on a hand-made corpus with leads and links."""
from __future__ import annotations

import random

import pytest

from retrlab.data.dataset import RetrievalData
from retrlab.pretraining.hyperlinks import (article_index, bfs_pair, example_pairs, link_stats,
                                            mixed_task, wlp_pair)


def corpus_with_links() -> RetrievalData:
    rows = {  # pid: (article, lead, text, links)
        "a0": ("Apple", True, "Apple is a fruit. It grows on trees.", ["Tree", "Pear"]),
        "a1": ("Apple", False, "Apples are harvested in autumn. They keep well.", []),
        "a2": ("Apple", False, "Cider is made from apples. It is old.", ["Cider"]),
        "p0": ("Pear", True, "Pear is a fruit. Pears are sweet.", ["Apple"]),
        "p1": ("Pear", False, "Pear trees live long. They need sun.", ["Apple", "Apple", "Moon"]),
        "t0": ("Tree", True, "Trees are plants. They have wood.", ["Pear"]),
    }
    corpus = {pid: {"title": a, "text": x, "article": a, "section": a, "lead": lead, "links": links}
              for pid, (a, lead, x, links) in rows.items()}
    return RetrievalData("links", corpus, {}, {}, {}, {"train": []})


def test_index_counts_inlinks_from_other_articles_only():
    index = article_index(corpus_with_links())
    assert index.inlinks == {"Pear": ["a0", "t0"], "Apple": ["p0", "p1"], "Tree": ["a0"]}
    assert index.lead_sentences["Apple"] == [("a0", "Apple is a fruit."), ("a0", "It grows on trees.")]
    assert index.passages["Apple"] == ["a0", "a1", "a2"]


def test_link_stats_exact():
    assert link_stats(corpus_with_links()) == {
        "articles": 3, "links": 8, "links_inside_sample": 6, "articles_with_inlinks": 3,
        "wlp_articles": 3, "wlp_passages": 4}


def test_bfs_pairs_stay_in_the_article_and_leave_the_lead_passage():
    index, rng = article_index(corpus_with_links()), random.Random(0)
    for _ in range(50):
        sentence, pid = bfs_pair(index, "Apple", rng)
        assert sentence in ("Apple is a fruit.", "It grows on trees.")
        assert pid in ("a1", "a2")


def test_wlp_pairs_come_from_linking_articles():
    index, rng = article_index(corpus_with_links()), random.Random(0)
    seen = {wlp_pair(index, "Apple", rng)[1] for _ in range(50)}
    assert seen == {"p0", "p1"}
    with pytest.raises(ValueError, match="no passage of another article links"):
        wlp_pair(index, "Moon", rng)
    with pytest.raises(ValueError, match="no passage besides"):
        bfs_pair(index, "Tree", rng)


def test_mixed_task_is_seeded_and_validates(toy_data):
    data = corpus_with_links()
    task = mixed_task(data, ("bfs", "wlp"))
    assert task(random.Random(2), 2) == task(random.Random(2), 2)
    with pytest.raises(ValueError, match="subset of ict/bfs/wlp"):
        mixed_task(data, ("bfs", "xyz"))
    with pytest.raises(ValueError, match="article/lead/links"):
        mixed_task(toy_data)  # the toy corpus has no lead/links fields
    assert len(example_pairs(data, "wlp", n=2)) == 2
