"""Other suspects in the data behind the top-1 collapse: duplicates, near-empty passages, the title prefix.

docs/RESULTS.md 1.7 asks whether the top-1 "negatives" of the hard-negative study (zero-shot MiniLM's
top-100 over wiki-car's train split, labelled positive removed) are broken text rather than hard text:

* exact duplicates: train passages whose body is the same text as another's;
* near-empty passages: bodies under 10 words, in the corpus and among the top-1 candidates;
* near-copies of the positive: word-set Jaccard between each top-1 candidate and the query's labelled
  positive, against a random other passage of the same article (the same topic, picked blindly);
* the title prefix: every passage reads "Title: body", and so do all of its article's passages. The
  median cosine between top-1 candidate and positive, with the prefix and without it, shows how much of
  their closeness the shared title alone gives;
* the rank windows the study trains on (1, 2-4, 5-30, 30-100): where their candidates sit relative to
  the query's heading (``retrlab.data.wikicar.relation``) and how many the zero-shot model already scores
  above the labelled positive.

No training: about a minute on 2 cores with the zero-shot vectors cached (they are built otherwise).

    python benchmarks/top1_anatomy.py [--pairs 300] [--out benchmarks/results]
"""
from __future__ import annotations

import argparse
import random
import re
import statistics
from pathlib import Path

import numpy as np

from retrlab.cache import atomic_write_json
from retrlab.data import load_wikicar
from retrlab.data.wikicar import relation
from retrlab.encoders import BiEncoder
from retrlab.evaluation import cached_corpus_embeddings
from retrlab.pool import dense_pool

RESULTS = Path(__file__).resolve().parent / "results"
SHORT = 10  # words: a body below this is "near-empty"
WINDOWS = ((1, 1), (2, 4), (5, 30), (30, 100))  # 1-based pool ranks, both ends included
SAME_TOPIC = ("lead", "parent", "child", "sibling")  # the heading's own neighbourhood (docs/RESULTS.md 1.2)


def words(text: str) -> list[str]:
    """Lower-cased word tokens (``\\w+``)."""
    return re.findall(r"\w+", text.lower())


def jaccard(a: str, b: str) -> float:
    """Word-set Jaccard similarity of two texts (0 when both are empty)."""
    x, y = set(words(a)), set(words(b))
    return len(x & y) / len(x | y) if x | y else 0.0


def duplicate_bodies(bodies: list[str]) -> int:
    """How many bodies repeat an earlier one exactly (case and surrounding space ignored)."""
    seen: set[str] = set()
    repeats = 0
    for body in bodies:
        key = body.strip().lower()
        repeats += key in seen
        seen.add(key)
    return repeats


def window_profile(data, pool, first: int, last: int) -> dict:
    """Shares of the candidates at pool ranks ``first..last``: relevant, same topic, another section of
    the article, another article; and scored above the query's labelled positive."""
    kinds, above = [], []
    for q in pool.qids:
        pids, scores, _ = pool.candidates(q)
        kinds += [relation(data, q, p) for p in pids[first - 1:last]]
        above += list(scores[first - 1:last] > pool.positive_scores[pool.index(q)])
    share = {k: float(np.mean([kind == k for kind in kinds])) for k in ("relevant", "other-section", "other-article")}
    return {**share, "same_topic": float(np.mean([k in SAME_TOPIC for k in kinds])),
            "above_positive": float(np.mean(above)), "candidates": len(kinds)}


def paired_cosines(model: BiEncoder, a: list[str], b: list[str]) -> np.ndarray:
    """Cosine of each a[i] with b[i] (the model's vectors are L2-normalised)."""
    return (model.encode_passages(a, progress=False) * model.encode_passages(b, progress=False)).sum(1)


def anatomy(data, model: BiEncoder, pairs: int, seed: int = 0) -> dict:
    train = data.search_pids("train")
    pool = dense_pool(model, data, "train", depth=100, source="zero-shot",
                      passage_vectors=cached_corpus_embeddings(model, "minilm", data, train))
    body = {p: data.corpus[p]["text"] for p in train}
    top1 = {q: pool.candidates(q)[0][0] for q in pool.qids}
    positive = {q: data.positives[q][0] for q in pool.qids}
    by_article: dict[str, list[str]] = {}
    for p in train:
        by_article.setdefault(data.corpus[p]["article"], []).append(p)
    rng = random.Random(seed)
    blind = {q: rng.choice(others) for q in pool.qids
             if (others := [p for p in by_article[data.corpus[positive[q]]["article"]] if p != positive[q]])}
    near_copy = [jaccard(body[top1[q]], body[positive[q]]) for q in pool.qids]
    gaps = [pool.positive_scores[pool.index(q)] - pool.candidates(q)[1][0] for q in pool.qids]
    sample = pool.qids[:pairs]
    titled = paired_cosines(model, data.passage_texts([top1[q] for q in sample]),
                            data.passage_texts([positive[q] for q in sample]))
    untitled = paired_cosines(model, [body[top1[q]] for q in sample], [body[positive[q]] for q in sample])
    return {
        "queries": len(pool.qids), "train_passages": len(train),
        "duplicate_bodies": duplicate_bodies(list(body.values())),
        "body_words_median": statistics.median(len(words(b)) for b in body.values()),
        "near_empty_share_corpus": float(np.mean([len(words(b)) < SHORT for b in body.values()])),
        "near_empty_share_top1": float(np.mean([len(words(body[p])) < SHORT for p in top1.values()])),
        "top1_same_article_share": float(np.mean([data.corpus[top1[q]]["article"] == data.corpus[positive[q]]["article"]
                                                  for q in pool.qids])),
        "jaccard_top1_positive_median": statistics.median(near_copy),
        "jaccard_top1_positive_over_0.5": float(np.mean([j > 0.5 for j in near_copy])),
        "jaccard_blind_same_article_median": statistics.median(jaccard(body[b], body[positive[q]])
                                                               for q, b in blind.items()),
        "top1_above_positive_share": float(np.mean([g < 0 for g in gaps])),
        "positive_minus_top1_median": float(np.median(gaps)),
        "pairs": len(sample), "cosine_top1_positive_titled_median": float(np.median(titled)),
        "cosine_top1_positive_body_only_median": float(np.median(untitled)),
        "windows": {f"{a}-{b}": window_profile(data, pool, a, b) for a, b in WINDOWS}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pairs", type=int, default=300, help="queries whose top-1/positive cosines are compared")
    parser.add_argument("--subset", type=int, default=0, help="train queries kept (0: all; a quick check)")
    parser.add_argument("--out", type=Path, default=RESULTS, help="folder for top1_anatomy.json")
    args = parser.parse_args()
    if args.pairs < 1:
        parser.error(f"--pairs must be >= 1, got {args.pairs}")
    data = load_wikicar()
    if args.subset:
        data = data.subset({"train": args.subset, "dev": 10, "test": 10})
    report = anatomy(data, BiEncoder.minilm(passage_max_length=64), args.pairs)
    for key, value in report.items():
        if key != "windows":
            print(f"{key:40s} {value:.3f}" if isinstance(value, float) else f"{key:40s} {value}")
    print(f"\n{'ranks':>7s} {'relevant':>9s} {'same topic':>11s} {'other sect.':>12s} {'other art.':>11s} "
          f"{'above positive':>15s}")
    for window, w in report["windows"].items():
        print(f"{window:>7s} {w['relevant']:9.1%} {w['same_topic']:11.1%} {w['other-section']:12.1%} "
              f"{w['other-article']:11.1%} {w['above_positive']:15.1%}")
    args.out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(args.out / "top1_anatomy.json", report)
    print(f"written: {args.out / 'top1_anatomy.json'}")


if __name__ == "__main__":
    main()
