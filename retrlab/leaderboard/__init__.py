"""The leaderboard: every fine-tuning strategy on one budget and several seeds.

Notebook 14 and ``retrlab run`` / ``retrlab leaderboard`` use it.

* ``budget`` — ``LeaderboardBudget`` and the SMOKE / DEFAULT / FULL presets;
* ``entries`` — the registry ``ENTRIES`` (strategies, and controls such as AR2 without its ranker, run on
  request only: ``default_strategies``) and ``run_entry(name, data, budget, seed)``;
* ``board`` — ``run_leaderboard``, the ``Leaderboard`` table, comparisons, plot and JSON; the cached
  per-result store (``stored_board``) and the full board (``FULL_BOARD_STRATEGIES`` at the FULL preset);
* ``effects`` — the paper-effects table: each paper's claimed gap against ours (``effects_table``).
"""
from retrlab.leaderboard.board import (FULL_BOARD_COMMAND, FULL_BOARD_SEEDS, FULL_BOARD_STRATEGIES, Leaderboard,
                                      full_board_command, plot_leaderboard, run_leaderboard, stored_board)
from retrlab.leaderboard.budget import DEFAULT, FULL, SMOKE, LeaderboardBudget, preset
from retrlab.leaderboard.effects import EFFECTS, compute_effect, effects_markdown, effects_table, paper_effect
from retrlab.leaderboard.entries import ENTRIES, Context, Result, default_strategies, get_entry, run_entry

__all__ = ["DEFAULT", "FULL", "SMOKE", "EFFECTS", "ENTRIES", "FULL_BOARD_COMMAND", "FULL_BOARD_SEEDS",
           "FULL_BOARD_STRATEGIES", "Context", "Leaderboard", "LeaderboardBudget", "Result", "compute_effect",
           "default_strategies",
           "effects_markdown", "effects_table", "full_board_command", "get_entry", "paper_effect", "plot_leaderboard",
           "preset", "run_leaderboard", "run_entry", "stored_board"]
