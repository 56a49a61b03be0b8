"""The cross-encoder: MiniLM with a one-logit head, its training, re-ranking and cache."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from tests.helpers import make_tiny_cross_encoder, toy_pool
from retrlab.encoders import CrossEncoder, segment_means
from retrlab.artifacts import cross_encoder_folder
from retrlab.rerank import (CrossEncoderBudget, rerank_run, score_candidates,
                            train_cross_encoder)

QUERIES = ["what do cats eat", "what do cats eat", "how do rivers flood"]
PASSAGES = ["Cats eat meat such as mice.", "A river flows downhill to the sea, slowly and steadily.",
            "Floods happen when rain makes a river overflow."]


@pytest.fixture(scope="module", params=["segment-cosine", "classifier"])
def minilm_ce(request) -> CrossEncoder:
    return CrossEncoder.minilm(max_length=64, head=request.param)


def test_minilm_cross_encoder_gives_one_logit_per_pair(minilm_ce, float32):  # batching changes bf16 sums
    expected_model = "BertModel" if minilm_ce.head == "segment-cosine" else "BertForSequenceClassification"
    assert type(minilm_ce.model).__name__ == expected_model
    minilm_ce.eval()
    with torch.no_grad():
        logits = minilm_ce(QUERIES, PASSAGES)
    assert logits.shape == (3,)
    # predict sorts pairs by length for speed but returns them in input order
    assert np.allclose(minilm_ce.predict(QUERIES, PASSAGES, batch_size=2), logits.numpy(), atol=1e-5)
    assert np.allclose(minilm_ce.predict_proba(QUERIES, PASSAGES), torch.sigmoid(logits).numpy(), atol=1e-6)


def test_segment_means_on_hand_made_states():
    states = torch.tensor([[[1.0, 0.0], [3.0, 2.0], [0.0, 4.0], [2.0, 2.0], [9.0, 9.0]]])  # (1, 5, 2)
    types = torch.tensor([[0, 0, 1, 1, 0]])
    mask = torch.tensor([[1, 1, 1, 1, 0]])  # the last position is padding: ignored
    query, passage = segment_means(states, types, mask)
    assert query.tolist() == [[2.0, 1.0]] and passage.tolist() == [[1.0, 3.0]]


def test_segment_cosine_logit_is_scaled_cosine_of_one_joint_pass(float32):  # the reference runs in float32
    ce = CrossEncoder.minilm(max_length=64, scale=10.0, offset=0.25).eval()
    batch = ce.tokenize(QUERIES[:1], PASSAGES[:1])
    with torch.no_grad():
        states = ce.model(**batch).last_hidden_state[0]  # (T, H): one pass, query and passage together
        types = batch["token_type_ids"][0]
        q, p = states[types == 0].mean(0), states[types == 1].mean(0)
        expected = 10.0 * (torch.dot(q, p) / (q.norm() * p.norm()) - 0.25)
        assert ce(QUERIES[:1], PASSAGES[:1]).item() == pytest.approx(expected.item(), abs=1e-4)
    # the passage changes the query tokens' states: the pair is read jointly, not encoded apart
    other = ce.tokenize(QUERIES[:1], PASSAGES[1:2])
    with torch.no_grad():
        q_other = ce.model(**other).last_hidden_state[0][other["token_type_ids"][0] == 0].mean(0)
    assert not torch.allclose(q, q_other, atol=1e-3)


def test_pairs_are_read_jointly(minilm_ce):
    ids = minilm_ce.tokenize(QUERIES[:1], PASSAGES[:1])["input_ids"][0].tolist()
    sep = minilm_ce.tokenizer.sep_token_id
    assert ids[0] == minilm_ce.tokenizer.cls_token_id and ids.count(sep) == 2  # [CLS] q [SEP] p [SEP]


def test_bad_input(minilm_ce):
    with pytest.raises(ValueError, match="pairs must align"):
        minilm_ce.predict(QUERIES, PASSAGES[:2])
    with pytest.raises(TypeError, match="lists"):
        minilm_ce("a query", "a passage")


def test_bad_head_settings():
    with pytest.raises(ValueError, match="unknown cross-encoder head 'max'"):
        CrossEncoder.minilm(head="max")
    with pytest.raises(ValueError, match="scale must be > 0"):
        CrossEncoder.minilm(scale=0.0)
    ce = CrossEncoder.minilm(max_length=32)
    batch = ce.tokenize(QUERIES[:1], PASSAGES[:1])
    del batch["token_type_ids"]
    with pytest.raises(ValueError, match="needs token_type_ids"):
        ce.logits(batch)


def test_save_and_load_roundtrip(minilm_ce, tmp_path):
    if minilm_ce.head == "segment-cosine":
        with torch.no_grad():
            minilm_ce.offset.fill_(0.3)  # a trained head: its scale and offset must survive the round trip
    minilm_ce.save_pretrained(tmp_path / "ce")
    again = CrossEncoder.from_pretrained(tmp_path / "ce")
    assert again.max_length == 64 and again.head == minilm_ce.head
    if again.head == "segment-cosine":
        assert again.offset.item() == pytest.approx(0.3) and again.log_scale.item() == pytest.approx(np.log(20.0))
    assert np.allclose(again.predict(QUERIES, PASSAGES), minilm_ce.predict(QUERIES, PASSAGES), atol=1e-5)


def tiny_cross_encoder(seed: int = 0) -> CrossEncoder:
    return make_tiny_cross_encoder(seed, hidden=32)


def test_minilm_classifier_head_is_seeded():
    a, b = CrossEncoder.minilm(seed=3, head="classifier"), CrossEncoder.minilm(seed=3, head="classifier")
    assert torch.equal(a.model.classifier.weight, b.model.classifier.weight)
    assert not torch.equal(a.model.classifier.weight,
                           CrossEncoder.minilm(seed=4, head="classifier").model.classifier.weight)


@pytest.mark.parametrize("head", ["classifier", "segment-cosine"])
def test_training_separates_positives_and_is_reproducible(toy_data, head):
    budget = CrossEncoderBudget(steps=10, batch_size=4, negatives=2, max_length=48, depth=8, lr=1e-3, head=head)
    results = []
    for _ in range(2):
        model = make_tiny_cross_encoder(0, hidden=32, head=head)
        initial_head = [p.item() for p in model.head_parameters()]
        history = train_cross_encoder(model, toy_data, toy_pool(toy_data), budget, progress=False)
        results.append([r["loss"] for r in history.rows])
    assert results[0] == pytest.approx(results[1], abs=1e-5)  # same seed, same losses
    assert np.mean(results[0][-3:]) < np.mean(results[0][:3])
    # the segment-cosine head's scale and offset train too (at head_lr); the classifier head has none apart
    assert len(initial_head) == (2 if head == "segment-cosine" else 0)
    assert all(abs(p.item() - p0) > 1e-3 for p, p0 in zip(model.head_parameters(), initial_head))
    qids = toy_data.qids("train")
    candidates = [toy_data.positives[q] + [p for p in toy_pool(toy_data).candidates(q)[0]
                                           if p not in toy_data.qrels[q]] for q in qids]
    probs = score_candidates(model, toy_data, qids, candidates, progress=False)
    # on average over queries, the labelled positive now outscores the true negatives
    assert np.mean([p[0] - p[1:].mean() for p in probs]) > 0
    with pytest.raises(ValueError, match="must be >= 1"):
        train_cross_encoder(model, toy_data, toy_pool(toy_data), CrossEncoderBudget(0, 4, 2, 48), progress=False)


def test_rerank_run_orders_by_cross_encoder(minilm_ce, toy_data):
    run = {"q0": {"c1": 3.0, "r3": 2.0, "c4": 1.0}}
    reranked = rerank_run(minilm_ce, toy_data, run, depth=2)
    assert set(reranked["q0"]) == {"c1", "r3"}  # only the top-2 of the first stage are re-scored
    expected = minilm_ce.predict([toy_data.queries["q0"]] * 2, toy_data.passage_texts(["c1", "r3"]))
    assert [reranked["q0"][p] for p in ("c1", "r3")] == pytest.approx(expected.tolist(), abs=1e-5)


def test_cached_builder_keys_budgets_apart(toy_data, tmp_path, monkeypatch):
    """The cache logic only: the slow parts (warm-up pool, MiniLM, dev report) are swapped for tiny ones."""
    import retrlab.artifacts as artifacts

    monkeypatch.setenv("RETRLAB_HOME", str(tmp_path))
    monkeypatch.setattr(artifacts, "warmup_pool", lambda data, smoke: toy_pool(data))
    monkeypatch.setattr(CrossEncoder, "minilm", classmethod(lambda cls, **kw: tiny_cross_encoder()))
    monkeypatch.setattr(artifacts, "rerank_report", lambda *args: {"reranked": {"MRR@10": 0.5}})
    tiny = CrossEncoderBudget(steps=1, batch_size=2, negatives=1, max_length=32)
    folder = cross_encoder_folder(toy_data, smoke=True, budget=tiny)
    assert (folder / "retrlab_crossencoder.json").exists()
    assert artifacts.cross_encoder_report(toy_data, smoke=True, budget=tiny)["budget"]["steps"] == 1

    def no_training(*args, **kwargs):
        raise AssertionError("a cached cross-encoder must not be retrained")

    monkeypatch.setattr(artifacts, "train_cross_encoder", no_training)
    assert cross_encoder_folder(toy_data, smoke=True, budget=tiny) == folder
    other = CrossEncoderBudget(steps=1, batch_size=2, negatives=1, max_length=32, seed=1)
    with pytest.raises(AssertionError, match="must not be retrained"):
        cross_encoder_folder(toy_data, smoke=True, budget=other)  # another key: a new build
    assert artifacts.cross_encoder_budget(True).key() != artifacts.cross_encoder_budget(False).key()
