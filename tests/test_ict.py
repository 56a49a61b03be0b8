"""ICT pair construction: the masking rate, what the context keeps, and determinism."""
from __future__ import annotations

import random

import pytest

from retrlab.pretraining.ict import MASK_RATE, ict_pair, ict_passages, ict_task, passage_sentences

SENTENCES = ["Cats sleep a lot.", "They hunt at dawn.", "Kittens play."]


def test_masking_rate_over_many_draws_is_exactly_reproducible_and_near_point_nine():
    rng = random.Random(0)
    draws = [ict_pair(SENTENCES, "Cats", rng) for _ in range(20000)]
    removed = sum(r for _, _, r in draws)
    # same seed, same count (exact), and the rate is 0.9 within 3 binomial standard deviations
    again = random.Random(0)
    assert removed == sum(ict_pair(SENTENCES, "Cats", again)[2] for _ in range(20000))
    assert abs(removed / 20000 - MASK_RATE) < 3 * (0.9 * 0.1 / 20000) ** 0.5
    # every sentence is drawn about a third of the time
    counts = {s: sum(q == s for q, _, _ in draws) for s in SENTENCES}
    assert all(abs(c / 20000 - 1 / 3) < 0.015 for c in counts.values())


def test_removed_sentence_is_absent_from_context_and_kept_otherwise():
    rng = random.Random(1)
    for _ in range(200):
        query, context, removed = ict_pair(SENTENCES, "Cats", rng)
        assert context.startswith("Cats: ")
        assert (query not in context) == removed
        rest = [s for s in SENTENCES if s != query]
        assert all(s in context for s in rest)


def test_mask_rate_extremes():
    rng = random.Random(0)
    assert ict_pair(SENTENCES, "", rng, mask_rate=1.0) [1] in {
        "They hunt at dawn. Kittens play.", "Cats sleep a lot. Kittens play.",
        "Cats sleep a lot. They hunt at dawn."}
    query, context, removed = ict_pair(SENTENCES, "", rng, mask_rate=0.0)
    assert not removed and context == " ".join(SENTENCES)


def test_bad_inputs_are_named():
    with pytest.raises(ValueError, match="two sentences"):
        ict_pair(["Only one."], "T", random.Random(0))
    with pytest.raises(ValueError, match="mask_rate"):
        ict_pair(SENTENCES, "T", random.Random(0), mask_rate=1.5)


def test_sentence_split_and_single_sentence_passages_dropped(toy_data):
    assert passage_sentences("A cat sat. The dog ran! Why? Yes.") == [
        "A cat sat.", "The dog ran!", "Why?", "Yes."]
    toy_data.corpus["c1"]["text"] = "First sentence here. Second sentence there."
    passages = ict_passages(toy_data)
    assert passages == [("Cats", ["First sentence here.", "Second sentence there."])]


def test_task_is_seeded(toy_data):
    for pid in ("c1", "c2", "r1"):
        toy_data.corpus[pid]["text"] = f"One {pid} is here. Two {pid} is there."
    task = ict_task(toy_data)
    a, b = task(random.Random(3), 2), task(random.Random(3), 2)
    assert a == b and len(a[0]) == 2 and len(a[1]) == 2
