"""Notebook helpers: the wording of a verdict, so every notebook says "significant" the same way.

A verdict is a ``retrlab.stats.Comparison`` (paired bootstrap over queries): ``difference`` is
system A minus system B, ``significant`` whether the 95% interval excludes 0.
"""
from __future__ import annotations

from retrlab.stats import Comparison


def verdict(comparison: Comparison, measure: str = "MRR@10") -> str:
    """'better (Δ MRR@10 +0.031, significant)', 'worse (...)' or 'within noise (Δ MRR@10 +0.004)'."""
    delta = f"Δ {measure} {comparison.difference:+.3f}" if measure else f"Δ {comparison.difference:+.3f}"
    if not comparison.significant:
        return f"within noise ({delta})"
    return f"{'better' if comparison.difference > 0 else 'worse'} ({delta}, significant)"


def direction(comparison: Comparison, up: str = "an improvement", down: str = "a drop") -> str:
    """``up`` or ``down`` when the difference is significant, else 'no difference we can tell from noise'."""
    if not comparison.significant:
        return "no difference we can tell from noise"
    return up if comparison.difference > 0 else down
