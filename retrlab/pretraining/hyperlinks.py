"""Body First Selection (BFS) and Wiki Link Prediction (WLP) — Chang, Yu, Chang, Yang & Kumar,
ICLR 2020, "Pre-training Tasks for Embedding-based Large-scale Retrieval". No official code was
released; this follows the paper's Section 3 task definitions (docs/methods.md, hyperlink pretraining).

Both tasks make (query, passage) pairs from Wikipedia's structure, trained like ICT with an
in-batch softmax (``bench.pretrain``):

* **BFS**: q = a random sentence of an article's first section (the lead); d = a random passage of
  the *same* article. It teaches document-level topic beyond the local paragraph.
* **WLP**: q = a random lead sentence of article A; d = a random passage of *another* article B
  that links to A. It teaches inter-page semantics.

Deviations: the paper trains ICT+BFS+WLP with a sampling-bias correction on batches of 8192; here
tasks are mixed per example in batches of 32, without the correction. BFS's passage is drawn from
the article's passages other than the one the sentence came from (otherwise the query would often
be copied inside its positive, which is ICT's unmasked case, not BFS). wiki-car is a 98-article
sample of Wikipedia: almost all links point outside it, so WLP has few pairs (``link_stats``).
"""
from __future__ import annotations

import random
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

from retrlab.data.dataset import RetrievalData
from retrlab.pretraining.bench import PairTask
from retrlab.pretraining.ict import ict_pair, ict_passages, passage_sentences


@dataclass
class ArticleIndex:
    """What BFS and WLP need from a corpus with ``article``/``lead``/``links`` fields."""
    lead_sentences: dict[str, list[tuple[str, str]]]  # article -> [(lead pid, sentence)]
    passages: dict[str, list[str]]  # article -> its pids, in reading order
    inlinks: dict[str, list[str]]  # article A -> pids of *other* articles' passages linking to A


def article_index(data: RetrievalData) -> ArticleIndex:
    """Index the lead sentences, passages and in-links of every article in ``data.corpus``."""
    missing = {"article", "lead", "links"} - set(next(iter(data.corpus.values())))
    if missing:
        raise ValueError(f"BFS/WLP need passages with article/lead/links fields; missing {sorted(missing)}")
    leads, passages, inlinks = defaultdict(list), defaultdict(list), defaultdict(list)
    for pid, doc in data.corpus.items():
        passages[doc["article"]].append(pid)
        if doc["lead"]:
            leads[doc["article"]] += [(pid, s) for s in passage_sentences(doc["text"])]
    for pid, doc in data.corpus.items():
        for target in doc["links"]:
            if target in passages and target != doc["article"]:
                inlinks[target].append(pid)
    return ArticleIndex(dict(leads), dict(passages), {a: list(dict.fromkeys(p)) for a, p in inlinks.items()})


def link_stats(data: RetrievalData) -> dict[str, int]:
    """How many links exist, and how many of them can serve as WLP pairs inside this sample."""
    index = article_index(data)
    links = [t for doc in data.corpus.values() for t in doc["links"]]
    return {"articles": len(index.passages),
            "links": len(links),
            "links_inside_sample": sum(t in index.passages for t in links),
            "articles_with_inlinks": len(index.inlinks),
            "wlp_articles": len(set(index.inlinks) & set(index.lead_sentences)),
            "wlp_passages": len({p for pids in index.inlinks.values() for p in pids})}


def bfs_pair(index: ArticleIndex, article: str, rng: random.Random) -> tuple[str, str]:
    """(lead sentence of ``article``, pid of another passage of the same article)."""
    lead_pid, sentence = rng.choice(index.lead_sentences[article])
    others = [p for p in index.passages[article] if p != lead_pid]
    if not others:
        raise ValueError(f"article {article!r} has no passage besides its lead sentence's")
    return sentence, rng.choice(others)


def wlp_pair(index: ArticleIndex, article: str, rng: random.Random) -> tuple[str, str]:
    """(lead sentence of ``article``, pid of a passage of another article that links to it)."""
    if not index.inlinks.get(article):
        raise ValueError(f"no passage of another article links to {article!r}")
    return rng.choice(index.lead_sentences[article])[1], rng.choice(index.inlinks[article])


def bfs_articles(index: ArticleIndex) -> list[str]:
    return sorted(a for a in index.lead_sentences if len(index.passages[a]) > 1)


def wlp_articles(index: ArticleIndex) -> list[str]:
    return sorted(a for a in index.lead_sentences if index.inlinks.get(a))


def mixed_task(data: RetrievalData, tasks: Sequence[str] = ("ict", "bfs", "wlp")) -> PairTask:
    """A pair task drawing each example's task uniformly from ``tasks`` (any of ict/bfs/wlp).

    Within a batch, examples of BFS/WLP use distinct articles, so an in-batch negative is never
    another positive of the same query article (ICT passages are distinct too).
    """
    unknown = set(tasks) - {"ict", "bfs", "wlp"}
    if unknown or not tasks:
        raise ValueError(f"tasks must be a non-empty subset of ict/bfs/wlp, got {list(tasks)}")
    index = article_index(data)
    pools = {"ict": ict_passages(data), "bfs": bfs_articles(index), "wlp": wlp_articles(index)}

    def task(rng: random.Random, batch_size: int) -> tuple[list[str], list[str]]:
        kinds = [rng.choice(list(tasks)) for _ in range(batch_size)]
        drawn = {k: rng.sample(pools[k], min(kinds.count(k), len(pools[k]))) for k in sorted(set(kinds))}
        queries, passages = [], []
        for kind in sorted(drawn):  # sorted: the same seed gives the same batch
            for item in drawn[kind]:
                if kind == "ict":
                    q, context, _ = ict_pair(item[1], item[0], rng)
                else:
                    q, pid = (bfs_pair if kind == "bfs" else wlp_pair)(index, item, rng)
                    context = data.passage_text(pid)
                queries.append(q)
                passages.append(context)
        return queries, passages

    return task


def example_pairs(data: RetrievalData, kind: str, n: int = 3, seed: int = 0) -> list[tuple[str, str]]:
    """``n`` (query, passage text) pairs of one task, for showing in a notebook."""
    rng, index = random.Random(seed), article_index(data)
    articles = rng.sample(bfs_articles(index) if kind == "bfs" else wlp_articles(index), n)
    pair = bfs_pair if kind == "bfs" else wlp_pair
    return [(q, data.passage_text(p)) for q, p in (pair(index, a, rng) for a in articles)]
