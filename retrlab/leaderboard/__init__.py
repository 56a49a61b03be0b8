"""The leaderboard: every fine-tuning strategy on one budget and several seeds.

Notebook 14 and ``retrlab run`` / ``retrlab leaderboard`` use it.

* ``budget`` — ``LeaderboardBudget`` and the SMOKE / DEFAULT / FULL presets;
* ``strategies`` — the registry ``STRATEGIES`` and ``run_strategy(name, data, budget, seed)``;
* ``board`` — ``run_leaderboard``, the ``Leaderboard`` table, comparisons, plot and JSON.
"""
from retrlab.leaderboard.board import Leaderboard, plot_leaderboard, run_leaderboard
from retrlab.leaderboard.budget import DEFAULT, FULL, SMOKE, LeaderboardBudget, preset
from retrlab.leaderboard.strategies import STRATEGIES, Context, Result, get_strategy, run_strategy

__all__ = ["DEFAULT", "FULL", "SMOKE", "STRATEGIES", "Context", "Leaderboard", "LeaderboardBudget", "Result",
           "get_strategy", "plot_leaderboard", "preset", "run_leaderboard", "run_strategy"]
