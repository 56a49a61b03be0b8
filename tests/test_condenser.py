"""Condenser's head input, losses and spans; coCondenser's contrastive loss and cached step."""
from __future__ import annotations

import math
import random

import pytest
import torch
import torch.nn.functional as F

from retrlab.pretraining.bench import (Checkpoint, PretrainConfig, TinyConfig, corpus_texts, new_mlm,
                                       pretrain, train_wordpiece)
from retrlab.pretraining.condenser import (CondenserConfig, architecture, cached_cocondenser,
                                           cached_condenser, cls_swap_cost, cocondenser_step,
                                           condenser_forward, head_from, head_input, masked_batch, new_head,
                                           pretrain_condenser, sibling_targets, span_batch_ids, span_bounds,
                                           span_contrastive_loss)
from retrlab.train import History

TINY = TinyConfig(vocab_size=200, layers=2, hidden=16, heads=2, query_max_length=16, passage_max_length=24,
                  pooling="cls")


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture
def tok(toy_data):
    return train_wordpiece(corpus_texts(toy_data), 200)


def tiny_models(tok, seed: int = 0):
    mlm = new_mlm(tok, TINY, seed)
    return mlm, new_head(mlm, 2, seed)


def test_head_input_is_late_cls_then_early_tokens():
    emb, early, late = (torch.full((2, 4, 3), v) for v in (0.0, 1.0, 2.0))
    late[:, 0] = 9.0  # the last layer's CLS
    out = head_input((emb, early, late), skip_from=1)
    assert out.shape == (2, 4, 3)
    assert torch.equal(out[:, 0], torch.full((2, 3), 9.0)) and torch.equal(out[:, 1:], early[:, 1:])
    assert torch.equal(head_input((emb, early, late), 0)[:, 1:], emb[:, 1:])  # embeddings allowed
    for bad in (2, -1):  # the last layer's tokens (no bottleneck), or nonsense
        with pytest.raises(ValueError, match="skip_from"):
            head_input((emb, early, late), bad)


def test_condenser_forward_feeds_the_head_and_shares_the_mlm_head(tok, toy_data):
    mlm, head = tiny_models(tok)
    mlm.eval(), head.eval()
    ids = tok(corpus_texts(toy_data)[:3], add_special_tokens=False)["input_ids"]
    torch.manual_seed(0)
    batch = masked_batch(tok, ids)
    seen = []
    head.register_forward_hook(lambda module, args, output: seen.append((args[0], output)))
    out = condenser_forward(mlm, head, batch, skip_from=1)
    states = mlm.bert(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                      output_hidden_states=True).hidden_states
    fed, head_out = seen[0]
    assert torch.equal(fed[:, 0], states[2][:, 0]) and torch.equal(fed[:, 1:], states[1][:, 1:])
    assert torch.equal(out.cls, states[2][:, 0])
    labels = batch["labels"]
    # late MLM = HF's own masked-LM loss; head MLM = the same head (mlm.cls) on the head's output
    assert out.late_mlm.item() == pytest.approx(mlm(**batch).loss.item(), rel=1e-5)
    expected = F.cross_entropy(mlm.cls(head_out).flatten(0, 1), labels.flatten(), ignore_index=-100)
    assert out.head_mlm.item() == pytest.approx(expected.item(), rel=1e-5)
    assert not any(p.shape[0] == len(tok) for p in head.parameters())  # no prediction head of its own


def test_masked_batch_wraps_rows_and_masks_only_real_tokens(tok):
    torch.manual_seed(0)
    batch = masked_batch(tok, [[10, 11, 12, 13] * 10, [20, 21]])
    assert batch["input_ids"].shape == (2, 42)
    assert batch["input_ids"][1, 0] == tok.cls_token_id and batch["input_ids"][1, 3] == tok.sep_token_id
    assert batch["attention_mask"][1].tolist() == [1] * 4 + [0] * 38
    labelled = batch["labels"] != -100
    assert not labelled[:, 0].any() and not labelled[1, 3:].any()  # never CLS, SEP or padding
    assert 0 < labelled.sum() <= 42  # some of the 42 real tokens


def test_span_bounds_lengths_and_bounds():
    # offset 1 gives chunks [1,4) [4,7) [7,10); the seed draws chunks 1 and 0
    assert span_bounds(10, 3, random.Random(0)) == [(4, 7), (1, 4)]
    for n in (2, 3, 7, 64, 181):
        for length in (1, 5, 32):
            for seed in range(20):
                spans = span_bounds(n, length, random.Random(seed))
                expected = min(length, n // 2)
                assert len(spans) == 2 and all(e - s == expected for s, e in spans)
                (s1, e1), (s2, e2) = sorted(spans)
                assert 0 <= s1 < e1 <= s2 < e2 <= n  # inside the passage, not overlapping
    with pytest.raises(ValueError, match="two spans"):
        span_bounds(1, 4, random.Random(0))
    with pytest.raises(ValueError, match="span_length"):
        span_bounds(10, 0, random.Random(0))


def test_span_batch_puts_siblings_side_by_side(tok, toy_data):
    texts = corpus_texts(toy_data)[:4]
    spans = span_batch_ids(tok, texts, 3, random.Random(0))
    assert len(spans) == 8 and all(len(s) == 3 for s in spans)
    for i, text in enumerate(texts):
        ids = tok(text, add_special_tokens=False)["input_ids"]
        windows = [ids[j:j + 3] for j in range(len(ids) - 2)]
        assert spans[2 * i] in windows and spans[2 * i + 1] in windows  # both from text i


def test_sibling_targets_and_contrastive_loss_by_hand():
    assert sibling_targets(4).tolist() == [1, 0, 3, 2]
    official = torch.arange(6).view(-1, 2).flip([1]).flatten()  # ``co_target`` in modeling.py
    assert torch.equal(sibling_targets(6), official)
    for bad in (0, 3):
        with pytest.raises(ValueError, match="sibling pairs"):
            sibling_targets(bad)
    h = torch.tensor([[1.0, 0.0], [1.0, 1.0], [0.0, 2.0], [0.0, -1.0]])
    scores = (h @ h.T).tolist()  # raw dot products, no temperature
    by_hand = []
    for i, sib in enumerate([1, 0, 3, 2]):
        others = [scores[i][k] for k in range(4) if k != i]
        by_hand.append(-scores[i][sib] + math.log(sum(math.exp(s) for s in others)))
    assert span_contrastive_loss(h).item() == pytest.approx(sum(by_hand) / 4, rel=1e-6)
    # scaling the vectors changes the loss: there is no normalisation
    assert span_contrastive_loss(2 * h).item() != pytest.approx(span_contrastive_loss(h).item())


def test_cocondenser_step_gradient_cache_equals_full_batch(tok, toy_data):
    mlm, head = tiny_models(tok)
    mlm.eval(), head.eval()  # dropout off: one forward and the chunked ones see the same network
    torch.manual_seed(0)
    batch = masked_batch(tok, span_batch_ids(tok, corpus_texts(toy_data)[:5], 4, random.Random(0)))
    grads, logged = {}, {}
    for chunk in (0, 3):  # 0: one full-batch forward; 3: gradient cache over chunks of 3 spans
        mlm.zero_grad(), head.zero_grad()
        logged[chunk] = cocondenser_step(mlm, head, batch, CondenserConfig(span_length=4, chunk_size=chunk))
        grads[chunk] = [p.grad.clone() for m in (mlm, head) for p in m.parameters() if p.grad is not None]
    assert len(grads[0]) == len(grads[3]) > 20
    assert max((a - b).abs().max().item() for a, b in zip(grads[0], grads[3])) < 1e-5
    assert logged[3]["co"] == pytest.approx(logged[0]["co"], rel=1e-6)
    assert logged[3]["mlm"] == pytest.approx(logged[0]["mlm"], rel=1e-5)  # MLM normalised by the whole batch


def test_pretrain_condenser_is_seeded_learns_and_stores_the_head(tok, toy_data):
    config = PretrainConfig(steps=8, batch_size=4, lr=3e-3)
    runs = [pretrain_condenser(tok, corpus_texts(toy_data), config, tiny=TINY, progress=False)
            for _ in range(2)]
    assert [r["loss"] for r in runs[0].history.rows] == [r["loss"] for r in runs[1].history.rows]
    assert {"head_mlm", "late_mlm"} <= set(runs[0].history.rows[0])
    losses = runs[0].history.series("loss")[1]
    assert sum(losses[-2:]) < sum(losses[:2])
    head = head_from(runs[0])
    assert torch.equal(head.layers[1].output.dense.weight, runs[0].state["head.layers.1.output.dense.weight"])
    with pytest.raises(ValueError, match="no Condenser head"):
        head_from(Checkpoint(runs[0].mlm, History(), {}))


def test_cached_builders_chain_condenser_into_cocondenser(tok, toy_data, tmp_path, monkeypatch):
    monkeypatch.setenv("RETRLAB_HOME", str(tmp_path))
    texts = corpus_texts(toy_data)
    condenser = CondenserConfig(span_length=4, chunk_size=3)
    co = cached_cocondenser(tok, texts, 3, condenser_steps=2, condenser=condenser, batch_size=4, tiny=TINY,
                             progress=False)
    names = sorted(p.name for p in (tmp_path / "pretraining").iterdir())
    assert any(n.startswith("v1-condenser-skip1-head2-b4-steps2") for n in names)
    assert any(n.startswith("v1-cocondenser-from2-") and "-steps3-" in n for n in names)
    assert len(co.history.rows) == 3 and {"co", "mlm"} <= set(co.history.rows[0])
    again = cached_cocondenser(tok, texts, 3, condenser_steps=2, condenser=condenser, batch_size=4, tiny=TINY,
                             progress=False)
    assert again.history.rows == co.history.rows  # loaded, not retrained
    start = cached_condenser(tok, texts, 2, condenser=condenser, batch_size=4, tiny=TINY,
                             progress=False)
    moved = [not torch.equal(a, b) for a, b in zip(start.mlm.parameters(), co.mlm.parameters())]
    assert any(moved)  # the second stage trained the backbone it started from


def test_architecture_rows(tok):
    mlm, head = tiny_models(tok)
    rows = dict(architecture(mlm, head, tok, "cats eat meat", skip_from=1, max_length=24))
    t = rows["input_ids [CLS] tokens [SEP] (masked)"][1]
    assert rows["head input cat(last[:, :1], early[:, 1:])"] == (1, t, 16)
    assert rows["MLM logits from the head (shared mlm.cls)"] == (1, t, len(tok))
    assert rows["retrieval vector: last layer's CLS"] == (1, 16)
    assert sum("EARLY" in k for k in rows) == 1 and sum("LAST" in k for k in rows) == 1


def test_pretrain_rejects_a_self_backward_loss_without_loss_fn(tok, toy_data):
    mlm = new_mlm(tok, TINY)
    with pytest.raises(ValueError, match="loss_fn_backward"):
        pretrain(mlm, tok, corpus_texts(toy_data), PretrainConfig(steps=1, mlm_weight=1.0), tiny=TINY,
                 loss_fn_backward=True)


def test_cls_swap_cost_is_zero_for_identical_texts_and_matches_by_hand(tok, toy_data):
    mlm, head = tiny_models(tok)
    mlm.eval(), head.eval()
    ids = tok(corpus_texts(toy_data)[0], add_special_tokens=False)["input_ids"]
    torch.manual_seed(0)
    same = masked_batch(tok, [ids])
    same = {k: v.repeat(3, 1) for k, v in same.items()}  # three copies: swapping changes nothing
    assert abs(cls_swap_cost(mlm, head, same, 1)) < 1e-6  # 0 up to float rounding across rows
    # at init the CLS vectors of different texts differ by ~1e-3 and an untrained head barely reads
    # them (cost ~1e-8); this head adds every row's CLS deviation from the batch mean, amplified
    def head(hidden, mask):
        return hidden + 1000 * (hidden[:, :1] - hidden[:, :1].mean(0, keepdim=True))
    torch.manual_seed(0)
    batch = masked_batch(tok, tok(corpus_texts(toy_data)[:3], add_special_tokens=False)["input_ids"])
    states = mlm.bert(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                      output_hidden_states=True).hidden_states
    x = head_input(states, 1)
    x_swapped = x.clone()
    x_swapped[:, 0] = x[[2, 0, 1], 0]  # row i reads row i-1's CLS
    labels = batch["labels"].flatten()
    by_hand = [F.cross_entropy(mlm.cls(head(v, batch["attention_mask"])).flatten(0, 1), labels).item()
               for v in (x, x_swapped)]
    # the swap matters here (its size depends on the random toy vocabulary and weights: 4e-4 to 4e-2
    # seen across runs), far above the < 1e-6 of the identical-text case ...
    assert abs(by_hand[1] - by_hand[0]) > 1e-4
    # ... and is measured
    assert cls_swap_cost(mlm, head, batch, 1) == pytest.approx(by_hand[1] - by_hand[0], abs=1e-5)
    with pytest.raises(ValueError, match="at least 2"):
        cls_swap_cost(mlm, head, {k: v[:1] for k, v in batch.items()}, 1)
