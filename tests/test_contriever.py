"""Contriever: independent crops, token deletion, the MoCo queue, momentum, logits, collapse probe."""
from __future__ import annotations

import math
import random
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F

from retrlab.pretraining.bench import PretrainConfig, TinyConfig, corpus_texts, new_mlm, train_wordpiece
from retrlab.pretraining.contriever import (ContrieverConfig, ContrieverLoss, cached_contriever,
                                            collate_views, contriever_views, crop_bounds, delete_tokens,
                                            dimension_std, enqueue, moco_logits, moco_loss,
                                            momentum_average, momentum_update, new_queue, probe_passages,
                                            pretrain_contriever, random_chunk)

TINY = TinyConfig(vocab_size=200, layers=1, hidden=16, heads=2, query_max_length=16,
                  passage_max_length=24)
SMALL = ContrieverConfig(queue_size=8, probe_size=4, probe_every=2)


pytestmark = pytest.mark.usefixtures("one_thread")


class ScriptedRng:
    """A stand-in for random.Random that returns scripted draws, to check exact arithmetic."""

    def __init__(self, uniform=0.0, randint_pick="high", randoms=()):
        self._uniform, self._pick, self._randoms = uniform, randint_pick, list(randoms)

    def uniform(self, low, high):
        return self._uniform

    def randint(self, low, high):
        return high if self._pick == "high" else low

    def random(self):
        return self._randoms.pop(0)


# --- cropping -------------------------------------------------------------------------------------
def test_crop_arithmetic_is_the_official_randomcrop():
    # length = int(n · ratio), start drawn with randint's inclusive upper bound n - length
    assert crop_bounds(100, 0.05, 0.5, ScriptedRng(uniform=0.25, randint_pick="high")) == (75, 100)
    assert crop_bounds(100, 0.05, 0.5, ScriptedRng(uniform=0.25, randint_pick="low")) == (0, 25)
    assert crop_bounds(37, 0.05, 0.5, ScriptedRng(uniform=0.3, randint_pick="high")) == (26, 37)  # int(11.1)
    # a short chunk still gets one token (int(3 · 0.05) = 0)
    assert crop_bounds(3, 0.05, 0.5, ScriptedRng(uniform=0.05, randint_pick="low")) == (0, 1)


@pytest.mark.parametrize("n", [1, 7, 64, 128, 256])
def test_crop_lengths_stay_within_five_to_fifty_percent_for_many_seeds(n):
    lengths = []
    for seed in range(400):
        start, end = crop_bounds(n, 0.05, 0.5, random.Random(seed))
        assert 0 <= start < end <= n
        lengths.append(end - start)
        assert max(1, int(0.05 * n)) <= end - start <= max(1, int(0.5 * n))
    if n >= 64:  # the range is used, both ends included
        assert min(lengths) <= int(0.1 * n) and max(lengths) >= int(0.45 * n)


def test_every_start_is_reachable():
    starts = {crop_bounds(10, 0.5, 0.5, random.Random(s))[0] for s in range(300)}
    assert starts == set(range(6))  # length 5, starts 0..5 inclusive


def test_crop_bad_inputs_are_named():
    with pytest.raises(ValueError, match="crop ratios"):
        crop_bounds(10, 0.0, 0.5, random.Random(0))
    with pytest.raises(ValueError, match="crop ratios"):
        crop_bounds(10, 0.6, 0.5, random.Random(0))
    with pytest.raises(ValueError, match="crop ratios"):
        crop_bounds(10, 0.1, 1.5, random.Random(0))
    with pytest.raises(ValueError, match="0 tokens"):
        crop_bounds(0, 0.1, 0.5, random.Random(0))


def test_random_chunk_is_a_window():
    tokens = list(range(300))
    chunk = random_chunk(tokens, 128, random.Random(3))
    assert len(chunk) == 128 and chunk == list(range(chunk[0], chunk[0] + 128))
    assert random_chunk(tokens[:50], 128, random.Random(3)) == tokens[:50]
    with pytest.raises(ValueError, match="chunk_length"):
        random_chunk(tokens, 0, random.Random(0))


# --- deletion -------------------------------------------------------------------------------------
def test_deletion_keeps_tokens_whose_draw_is_at_least_p():
    rng = ScriptedRng(randoms=[0.05, 0.5, 0.1, 0.09999])
    assert delete_tokens([10, 11, 12, 13], 0.1, rng) == [11, 12]


def test_deletion_rate_is_p_and_order_is_kept():
    tokens = list(range(20000))
    kept = delete_tokens(tokens, 0.1, random.Random(0))
    assert kept == sorted(kept) and set(kept) <= set(tokens)
    rate = 1 - len(kept) / len(tokens)
    assert abs(rate - 0.1) < 3 * math.sqrt(0.1 * 0.9 / len(tokens))
    assert kept == delete_tokens(tokens, 0.1, random.Random(0))  # same seed, same tokens
    assert delete_tokens(tokens[:100], 0.0, random.Random(0)) == tokens[:100]
    with pytest.raises(ValueError, match="deletion probability"):
        delete_tokens(tokens, 1.0, random.Random(0))


def test_views_are_crops_of_one_chunk_with_deletions():
    tokens = list(range(1000, 1400))  # distinct ids: a view's position in the text is its value
    config = ContrieverConfig(chunk_length=128)
    for seed in range(50):
        q, k = contriever_views(tokens, random.Random(seed), config)
        for view in (q, k):
            assert view == sorted(view) and len(view) <= 64  # at most 50% of 128, in order
        if q and k:  # both views come from one window of 128 tokens
            assert max(q + k) - min(q + k) < 128
    assert contriever_views(tokens, random.Random(1)) == contriever_views(tokens, random.Random(1))
    q, k = contriever_views(tokens, random.Random(2), ContrieverConfig(deletion=0.0))
    assert q == list(range(q[0], q[0] + len(q)))  # no deletion: contiguous spans


def test_collate_adds_cls_sep_and_pads():
    tok = SimpleNamespace(cls_token_id=2, sep_token_id=3, pad_token_id=0)
    batch = collate_views([[7, 8], [9], []], tok)
    assert batch["input_ids"].tolist() == [[2, 7, 8, 3], [2, 9, 3, 0], [2, 3, 0, 0]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1, 1], [1, 1, 1, 0], [1, 1, 0, 0]]


# --- the queue ------------------------------------------------------------------------------------
def test_queue_is_fifo_and_keeps_its_size():
    queue = torch.zeros(4, 2)
    batches = [torch.tensor([[1., 1.], [2., 2.]]), torch.tensor([[3., 3.], [4., 4.]]),
               torch.tensor([[5., 5.], [6., 6.]]), torch.tensor([[7., 7.], [8., 8.]])]
    pointer, pointers = 0, []
    for keys in batches:
        before = queue.clone()
        queue, pointer = enqueue(queue, pointer, keys)
        pointers.append(pointer)
        assert queue.shape == (4, 2)
        if len(pointers) == 1:
            assert torch.equal(before, torch.zeros(4, 2))  # the input is not changed
    assert pointers == [2, 0, 2, 0]
    # after 4 batches of 2 in a queue of 4: the two newest batches, oldest first from the pointer
    assert queue[:, 0].tolist() == [5., 6., 7., 8.]
    queue, pointer = enqueue(queue, pointer, torch.tensor([[9., 9.], [10., 10.]]))
    assert queue[:, 0].tolist() == [9., 10., 7., 8.] and pointer == 2  # 5 and 6 were the oldest


def test_queue_bad_inputs_are_named():
    with pytest.raises(ValueError, match="multiple of the batch size"):
        enqueue(torch.zeros(5, 2), 0, torch.ones(2, 2))
    with pytest.raises(ValueError, match="do not fit"):
        enqueue(torch.zeros(4, 2), 0, torch.ones(2, 3))
    with pytest.raises(ValueError, match="pointer"):
        enqueue(torch.zeros(4, 2), 1, torch.ones(2, 2))


def test_new_queue_is_seeded_unit_vectors():
    queue = new_queue(8, 16, seed=3)
    assert queue.shape == (8, 16) and torch.allclose(queue.norm(dim=1), torch.ones(8))
    assert torch.equal(queue, new_queue(8, 16, seed=3)) and not torch.equal(queue, new_queue(8, 16, seed=4))


# --- momentum -------------------------------------------------------------------------------------
def test_momentum_average_by_hand():
    key, query = torch.tensor([1.0, 2.0]), torch.tensor([3.0, -2.0])
    assert torch.allclose(momentum_average(key, query, 0.9), torch.tensor([1.2, 1.6]))
    assert torch.equal(momentum_average(key, query, 1.0), key)
    assert torch.equal(momentum_average(key, query, 0.0), query)
    with pytest.raises(ValueError, match="momentum"):
        momentum_average(key, query, 1.5)


def test_momentum_update_moves_every_key_parameter():
    torch.manual_seed(0)
    query, key = torch.nn.Linear(2, 2), torch.nn.Linear(2, 2)
    with torch.no_grad():
        query.weight.copy_(torch.tensor([[1., 2.], [3., 4.]]))
        query.bias.copy_(torch.tensor([1., -1.]))
        key.weight.zero_()
        key.bias.fill_(2.0)
    momentum_update(key, query, 0.75)
    assert torch.allclose(key.weight, torch.tensor([[0.25, 0.5], [0.75, 1.0]]))
    assert torch.allclose(key.bias, torch.tensor([1.75, 1.25]))  # 0.75·2 + 0.25·(±1)
    assert query.weight.tolist() == [[1., 2.], [3., 4.]]  # the query encoder does not move


# --- logits and loss ------------------------------------------------------------------------------
def test_moco_logits_put_the_positive_in_column_zero_and_the_queue_after_it():
    q = torch.tensor([[1., 0.], [0., 1.]])
    k = torch.tensor([[0.6, 0.8], [1., 0.]])
    queue = torch.tensor([[1., 0.], [0., 1.], [-1., 0.]])
    assert torch.allclose(moco_logits(q, k, queue), torch.tensor([[0.6, 1., 0., -1.], [0., 0., 1., 0.]]))
    expected = (-F.log_softmax(torch.tensor([0.6, 1., 0., -1.]) / 0.05, 0)[0]
                - F.log_softmax(torch.tensor([0., 0., 1., 0.]) / 0.05, 0)[0]) / 2
    assert torch.allclose(moco_loss(q, k, queue, 0.05), expected)
    with pytest.raises(ValueError, match="shapes"):
        moco_logits(q, k, torch.zeros(3, 5))


def test_moco_loss_sends_no_gradient_to_the_queue():
    q = torch.randn(2, 4, requires_grad=True)
    queue = torch.randn(6, 4, requires_grad=True)
    moco_loss(q, torch.randn(2, 4), queue, 0.05).backward()
    assert q.grad is not None and queue.grad is None


# --- collapse probe -------------------------------------------------------------------------------
def test_dimension_std_by_hand_and_at_collapse():
    assert dimension_std(torch.tensor([[1., 0.], [3., 0.], [5., 0.]])).tolist() == [2.0, 0.0]
    assert dimension_std(torch.ones(5, 3)).tolist() == [0.0, 0.0, 0.0]  # collapsed: no spread
    with pytest.raises(ValueError, match="N >= 2"):
        dimension_std(torch.ones(1, 3))


def test_probe_is_fixed_and_spread():
    texts = [f"t{i}" for i in range(10)]
    assert probe_passages(texts, 4) == ["t0", "t3", "t6", "t9"]
    with pytest.raises(ValueError, match="probe size"):
        probe_passages(texts, 11)


# --- the trainers ---------------------------------------------------------------------------------
@pytest.fixture
def toy_setup(toy_data):
    texts = corpus_texts(toy_data)
    return train_wordpiece(texts, 200), texts


def test_moco_step_follows_momentum_and_fills_the_queue(toy_setup):
    tok, texts = toy_setup
    mlm = new_mlm(tok, TINY)
    config = PretrainConfig(steps=1, batch_size=4, seed=0)
    loss_fn = ContrieverLoss(mlm, tok, texts, "moco", config, SMALL, TINY)
    start = loss_fn.queue.clone()
    loss, logged = loss_fn(mlm, random.Random(0))
    assert loss.requires_grad and {"probe_std", "contrastive", "accuracy", "stdq", "stdk"} <= set(logged)
    assert loss_fn.pointer == 4 and torch.equal(loss_fn.queue[4:], start[4:])
    assert not torch.equal(loss_fn.queue[:4], start[:4])
    assert torch.allclose(loss_fn.queue[:4].norm(dim=1), torch.ones(4))  # normalised keys
    # move the query encoder by +1 everywhere: the key encoder follows by (1 - m) = 0.01
    before = [p.detach().clone() for p in loss_fn.key_encoder.parameters()]
    with torch.no_grad():
        for p in mlm.bert.parameters():
            p.add_(1.0)
    loss_fn(mlm, random.Random(1))
    after = list(loss_fn.key_encoder.parameters())
    assert SMALL.momentum == 0.99
    assert all(torch.allclose(a, b + 0.01, atol=1e-6) for a, b in zip(after, before))
    assert loss_fn.pointer == 0  # 8 keys written into a queue of 8: the pointer wrapped


def test_trainer_bad_inputs_are_named(toy_setup):
    tok, texts = toy_setup
    mlm = new_mlm(tok, TINY)
    with pytest.raises(ValueError, match="mode"):
        ContrieverLoss(mlm, tok, texts, "simclr", PretrainConfig(batch_size=4), SMALL, TINY)
    with pytest.raises(ValueError, match="multiple of the batch size"):
        ContrieverLoss(mlm, tok, texts, "moco", PretrainConfig(batch_size=3), SMALL, TINY)
    with pytest.raises(ValueError, match="fewer than a batch"):
        ContrieverLoss(mlm, tok, texts, "inbatch", PretrainConfig(batch_size=32), SMALL, TINY)
    with pytest.raises(ValueError, match="mlm_weight"):
        pretrain_contriever(tok, texts, "inbatch", PretrainConfig(mlm_weight=1.0), SMALL, TINY)


@pytest.mark.parametrize("mode", ["inbatch", "moco"])
def test_pretraining_is_seeded_and_logs_the_probe(toy_setup, mode):
    tok, texts = toy_setup
    config = PretrainConfig(steps=5, batch_size=4, lr=3e-3, seed=0)
    runs = [pretrain_contriever(tok, texts, mode, config, SMALL, TINY, progress=False) for _ in range(2)]
    values = [[{k: v for k, v in r.items() if k != "seconds"} for r in c.history.rows] for c in runs]
    assert values[0] == values[1]  # same seed, same crops, losses and probe values
    probe_steps, probe_values = runs[0].history.series("probe_std")
    assert probe_steps == [1, 3, 5, 6]  # every 2 steps, and after the last update
    assert all(v > 0 for v in probe_values)
    assert set(runs[0].state) == ({"queue", "queue_pointer"} if mode == "moco" else set())
    if mode == "moco":
        assert runs[0].state["queue_pointer"].item() == (5 * 4) % 8


def test_cached_contriever_builds_once_per_mode(toy_setup, tmp_path, monkeypatch):
    monkeypatch.setenv("RETRLAB_HOME", str(tmp_path))
    tok, texts = toy_setup
    kwargs = dict(steps=2, seed=0, smoke=True, config=SMALL, batch_size=4, tiny=TINY, progress=False)
    a = cached_contriever(tok, texts, mode="moco", **kwargs)
    b = cached_contriever(tok, texts, mode="moco", **kwargs)
    assert a.history.rows == b.history.rows and torch.equal(a.state["queue"], b.state["queue"])
    cached_contriever(tok, texts, mode="inbatch", **kwargs)
    names = sorted(p.name for p in (tmp_path / "pretraining").iterdir())
    assert len(names) == 2 and "contriever-inbatch" in names[0] and "contriever-moco" in names[1]
    assert all(n.endswith("-smoke") and SMALL.key() in n for n in names)
    with pytest.raises(ValueError, match="mode"):
        cached_contriever(tok, texts, 2, mode="dpr")
