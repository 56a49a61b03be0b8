"""How sharp are AR2's two players at the start of the full board's game? (docs/RESULTS.md, section 4.1)

AR2's retriever learns only from the ranker: both terms of its loss (distillation and the adversarial
reward) read the ranker's scores, and the labelled positive enters only through them. This measures
both players' distributions over groups built as the full board's AR2 builds them (the positive and
3 candidates drawn from the warm-up pool's top-10): the mean probability on the positive, how often
the positive comes first, and the mean entropy against a uniform guess's. The players are the full
board's starting ones: the cached warm-up retriever (scores = cosine / τ) and the shared cross-encoder.

    python benchmarks/ar2_teacher.py [--groups 300] [--seed 0]
"""
from __future__ import annotations

import argparse
import random

import numpy as np

from retrlab.data import load_wikicar
from retrlab.leaderboard import FULL, Context
from retrlab.leaderboard.entries import AR2_DEPTH, AR2_NEGATIVES
from retrlab.methods.ar2 import probe_scores, sample_groups, sharpness


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--groups", type=int, default=300, help="training queries, one group each")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    data = load_wikicar(seed=0)
    ctx = Context(data, FULL)  # the full board's artifacts: built on first use, then cached
    pool, ranker, retriever = ctx.warmup_pool, ctx.ranker, ctx.fresh(ctx.warmup)
    rng = random.Random(args.seed)
    qids = rng.sample([q for q in pool.qids if len(pool.candidates(q)[0]) >= AR2_NEGATIVES], args.groups)
    groups = sample_groups(pool, data, qids, AR2_NEGATIVES, AR2_DEPTH, rng)  # as AR2's steps draw them
    hidden = np.array([[p in data.qrels[q] for p in group[1:]] for q, group in zip(qids, groups)])  # (Q, n)
    distributions = probe_scores(retriever, ranker, data, qids, groups, FULL.tau)
    print(f"{args.groups} groups of the positive and {AR2_NEGATIVES} of the warm-up pool's top-{AR2_DEPTH} "
          f"({hidden.mean():.1%} of those candidates are hidden positives)")
    for player, p in distributions.items():
        s = sharpness(p)
        print(f"{player:>9}: p(positive) {s['p_positive']:.3f}, positive first {s['positive_first']:.1%}, entropy "
              f"{s['entropy']:.3f} of {s['uniform_entropy']:.3f} (uniform); on hidden positives {p[:, 1:][hidden].mean():.3f}, "
              f"on true negatives {p[:, 1:][~hidden].mean():.3f}")


if __name__ == "__main__":
    main()
