"""Notebook helpers: the wording of a verdict, so every notebook says "significant" the same way.

A verdict is a ``retrlab.stats.Comparison`` (paired bootstrap over queries): ``difference`` is
system A minus system B, ``significant`` whether the 95% interval excludes 0.
"""
from __future__ import annotations

from retrlab.stats import Comparison, compare_runs


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


# --- the pretraining bench's verdicts (notebooks 08-12) ---------------------------------------------
def compare_pairs(results: dict, qrels: dict, pairs: list[tuple[str, str]], stages: list[str],
                  measure: str = "MRR@10") -> dict[tuple[str, str, str], Comparison]:
    """Paired bootstrap of system ``a`` against ``b`` for every (a, b) pair at every stage both ran.

    ``results`` maps a name to anything with ``.runs`` (stage -> run), such as the bench's
    ``ProtocolResult``; the answer is keyed ``(stage, a, b)``, in the order stage by stage, pair by pair.
    """
    missing = sorted({name for pair in pairs for name in pair} - set(results))
    if missing:
        raise KeyError(f"no result named {missing}; the results are {sorted(results)}")
    return {(stage, a, b): compare_runs(results[a].runs[stage], results[b].runs[stage], qrels, measure, a=a, b=b)
            for stage in stages for a, b in pairs
            if stage in results[a].runs and stage in results[b].runs}


def versus(verdicts: dict[tuple[str, str, str], Comparison], stage: str, pairs: list[tuple[str, str]],
           measure: str = "MRR@10") -> str:
    """'ICT vs MLM within noise (Δ MRR@10 +0.004); ICT vs random init better (...)' for one stage."""
    return "; ".join(f"{a} vs {b} {verdict(verdicts[stage, a, b], measure)}" for a, b in pairs)
