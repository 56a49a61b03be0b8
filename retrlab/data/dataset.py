"""One in-memory shape for every retrieval dataset: corpus, queries, labels, ground truth, splits.

The distinction that makes retrlab's lessons possible is between **labels** and **truth**:

* ``positives[qid]`` — the labelled positives a trainer may use (wiki-car: one per query, like
  MS MARCO's sparse labels);
* ``qrels[qid]`` — the complete ground truth (wiki-car: every passage of the query's section).

Passages in ``qrels`` but not in ``positives`` are *hidden positives*: a miner that does not know
about them calls them negatives. Evaluation always uses ``qrels``; training only ``positives``.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from retrlab.cache import atomic_write_json, load_json

SPLITS = ("train", "dev", "test")


@dataclass
class RetrievalData:
    name: str
    corpus: dict[str, dict]  # pid -> {"title": str, "text": str, ...metadata}
    queries: dict[str, str]  # qid -> query text
    qrels: dict[str, dict[str, int]]  # qid -> {pid: grade}, the complete ground truth
    positives: dict[str, list[str]]  # qid -> labelled positives (a subset of qrels[qid])
    splits: dict[str, list[str]]  # split name -> qids
    split_pids: dict[str, list[str]] = field(default_factory=dict)  # optional per-split search corpus

    def __post_init__(self) -> None:
        self.pids = list(self.corpus)
        self._row = {pid: i for i, pid in enumerate(self.pids)}
        self._check()

    def _check(self) -> None:
        """Empty texts and ids that point nowhere fail here, naming the id, not deep inside training."""
        for qid, text in self.queries.items():
            if not isinstance(text, str) or not text.strip():
                raise ValueError(f"query {qid!r} has no text: {text!r}")
        for pid, doc in self.corpus.items():
            if not str(doc.get("text", "")).strip() and not str(doc.get("title", "")).strip():
                raise ValueError(f"passage {pid!r} has an empty text and title")
        for name, labels in (("qrels", self.qrels), ("positives", self.positives)):
            for qid, pids in labels.items():
                if qid not in self.queries:
                    raise ValueError(f"{name} name query {qid!r}, which is not among the queries")
                unknown = [p for p in pids if p not in self.corpus]
                if unknown:
                    raise ValueError(f"{name} of query {qid!r} name passage {unknown[0]!r}, which is not in the corpus")
        for split, qids in self.splits.items():
            unknown = [q for q in qids if q not in self.queries]
            if unknown:
                raise ValueError(f"split {split!r} names query {unknown[0]!r}, which is not among the queries")
        for split, pids in self.split_pids.items():
            unknown = [p for p in pids if p not in self.corpus]
            if unknown:
                raise ValueError(f"the search corpus of split {split!r} names passage {unknown[0]!r}, "
                                 f"which is not in the corpus")

    # --- texts -------------------------------------------------------------------------------
    def passage_text(self, pid: str) -> str:
        """The text an encoder sees: ``"Title: body"`` (or the body alone when there is no title)."""
        doc = self.corpus[pid]
        return f"{doc['title']}: {doc['text']}" if doc.get("title") else doc["text"]

    def passage_texts(self, pids: list[str] | None = None) -> list[str]:
        return [self.passage_text(p) for p in (self.pids if pids is None else pids)]

    def query_texts(self, qids: list[str]) -> list[str]:
        return [self.queries[q] for q in qids]

    def row(self, pid: str) -> int:
        """Row of ``pid`` in ``self.pids`` (and in any corpus embedding matrix built from it)."""
        return self._row[pid]

    # --- splits and labels -------------------------------------------------------------------
    def qids(self, split: str) -> list[str]:
        if split not in self.splits:
            raise KeyError(f"unknown split {split!r}; this dataset has {sorted(self.splits)}")
        return self.splits[split]

    def search_pids(self, split: str) -> list[str]:
        """The passages a split's queries are searched over (the whole corpus unless narrowed)."""
        return self.split_pids.get(split, self.pids)

    def hidden_positives(self, qid: str) -> set[str]:
        """Relevant passages that carry no training label (the false negatives of a naive miner)."""
        return set(self.qrels.get(qid, {})) - set(self.positives.get(qid, []))

    def subset(self, split_sizes: dict[str, int]) -> RetrievalData:
        """A smaller copy with the first ``n`` queries of each split (for smoke runs).

        When passages carry an ``article`` field (wiki-car), each split's search corpus shrinks to
        the articles of the queries kept, so a smoke run also encodes fewer passages.
        """
        negative = {s: n for s, n in split_sizes.items() if n < 0}
        if negative:
            raise ValueError(f"subset sizes must be >= 0, got {negative}")
        splits = {s: q[: split_sizes.get(s, len(q))] for s, q in self.splits.items()}
        split_pids = dict(self.split_pids)
        for s, qids in splits.items():
            articles = {self.corpus[p].get("article") for q in qids for p in self.qrels.get(q, {})}
            if s in split_pids and None not in articles:
                split_pids[s] = [p for p in split_pids[s] if self.corpus[p]["article"] in articles]
        return RetrievalData(self.name, self.corpus, self.queries, self.qrels, self.positives,
                             splits, split_pids)

    # --- persistence -------------------------------------------------------------------------
    def save(self, folder: str | Path) -> Path:
        folder = Path(folder)
        for key in ("corpus", "queries", "qrels", "positives", "splits", "split_pids"):
            atomic_write_json(folder / f"{key}.json", getattr(self, key))
        atomic_write_json(folder / "meta.json", {"name": self.name})
        return folder

    @classmethod
    def load(cls, folder: str | Path) -> RetrievalData:
        folder = Path(folder)
        missing = [p.name for p in (folder / f"{k}.json" for k in
                   ("meta", "corpus", "queries", "qrels", "positives", "splits")) if not p.exists()]
        if missing:
            raise FileNotFoundError(f"{folder} is not a saved RetrievalData folder: missing {missing}")
        parts = {k: load_json(folder / f"{k}.json") for k in
                 ("corpus", "queries", "qrels", "positives", "splits")}
        split_pids = load_json(folder / "split_pids.json") if (folder / "split_pids.json").exists() else {}
        return cls(load_json(folder / "meta.json")["name"], split_pids=split_pids, **parts)

    def __repr__(self) -> str:
        sizes = ", ".join(f"{s}={len(q)}" for s, q in self.splits.items())
        return f"RetrievalData({self.name!r}: {len(self.corpus)} passages, queries {sizes})"

