"""Numbers shared by several modules, defined once."""
from __future__ import annotations

BM25_DEPTH = 10  # DPR's BM25 negative is drawn from BM25's top-10: notebook 01, the warm-up, the leaderboard
MEASURES = ("MRR@10", "R@20", "R@100", "nDCG@10")  # what ``metrics.evaluate`` and ``evaluate_run`` report by default
LEADERBOARD_MEASURES = ("MRR@10", "R@20", "nDCG@10")  # the leaderboard's runs are 20 deep: no R@100
POOL_DEPTH = 200  # a warm-up pool's depth (STAR's prepare_hardneg.py mines the top-200)
