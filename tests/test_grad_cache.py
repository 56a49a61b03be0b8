"""Gradient cache: chunked gradients equal full-batch gradients, dropout masks are replayed."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from retrlab.pretraining.grad_cache import (build_cache, forward_no_grad, grad_cache_step, replay_rng,
                                            RngState, split_batch)


def contrastive(reps: torch.Tensor) -> torch.Tensor:
    """In-batch softmax of rows 2i and 2i+1 (any loss that couples the whole batch will do)."""
    scores = reps @ reps.T
    scores = scores.masked_fill(torch.eye(len(reps), dtype=torch.bool), float("-inf"))
    return F.cross_entropy(scores, torch.arange(len(reps)) ^ 1)


def encoder(dropout: float) -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(6, 8), torch.nn.Tanh(), torch.nn.Dropout(dropout),
                               torch.nn.Linear(8, 4))


def grads(model: torch.nn.Module) -> list[torch.Tensor]:
    return [p.grad.clone() for p in model.parameters()]


def max_diff(a: list[torch.Tensor], b: list[torch.Tensor]) -> float:
    return max((x - y).abs().max().item() for x, y in zip(a, b))


def test_split_batch_cuts_rows_and_rejects_bad_input():
    batch = {"x": torch.arange(10).view(5, 2), "m": torch.ones(5, 3)}
    chunks = split_batch(batch, 2)
    assert [len(c["x"]) for c in chunks] == [2, 2, 1]
    assert torch.equal(torch.cat([c["x"] for c in chunks]), batch["x"])
    assert chunks[2]["m"].shape == (1, 3)
    with pytest.raises(ValueError, match="chunk_size"):
        split_batch(batch, 0)
    with pytest.raises(ValueError, match="same number of rows"):
        split_batch({"x": torch.ones(4, 1), "m": torch.ones(3, 1)}, 2)


def test_build_cache_gives_the_gradient_of_the_loss_at_the_representations():
    reps = torch.tensor([[1.0, 0.0], [0.0, 2.0]])
    cache, loss = build_cache(reps, lambda r: (r ** 2).sum())
    assert torch.equal(cache, 2 * reps) and loss.item() == 5.0
    assert not reps.requires_grad  # the caller's tensor is untouched


def test_equals_full_batch_gradients_without_dropout():
    model = encoder(0.0)
    x = torch.randn(8, 6, generator=torch.Generator().manual_seed(1))
    contrastive(model(x)).backward()  # the plain full-batch step
    full = grads(model)
    model.zero_grad()
    result = grad_cache_step(split_batch({"x": x}, 3), lambda c: model(c["x"]), contrastive)
    assert max_diff(full, grads(model)) < 1e-6
    assert result.loss == pytest.approx(contrastive(model(x)).item(), abs=1e-6) and result.local_loss == 0.0


def test_dropout_masks_are_replayed_and_matter():
    """With dropout the reference is the same chunked forward kept in one graph (same masks)."""
    model = encoder(0.5)
    x = torch.randn(8, 6, generator=torch.Generator().manual_seed(1))
    chunks = split_batch({"x": x}, 2)
    torch.manual_seed(7)
    contrastive(torch.cat([model(c["x"]) for c in chunks])).backward()
    reference = grads(model)
    for replay, close in ((True, True), (False, False)):
        model.zero_grad()
        torch.manual_seed(7)
        grad_cache_step(chunks, lambda c: model(c["x"]), contrastive, replay=replay)
        assert (max_diff(reference, grads(model)) < 1e-6) == close
    # without replay the re-forward draws fresh masks: the gradient is measurably wrong
    assert max_diff(reference, grads(model)) > 1e-3


def test_chunk_losses_are_added_to_the_cached_loss():
    model = encoder(0.0)
    x = torch.randn(6, 6, generator=torch.Generator().manual_seed(2))
    (contrastive(model(x)) + model(x).pow(2).sum() / 10).backward()
    full = grads(model)
    model.zero_grad()

    def forward(chunk):
        reps = model(chunk["x"])
        return reps, reps.pow(2).sum() / 10  # a per-chunk term (MLM in coCondenser)

    result = grad_cache_step(split_batch({"x": x}, 4), lambda c: model(c["x"]), contrastive, forward)
    assert max_diff(full, grads(model)) < 1e-5
    assert result.local_loss == pytest.approx(model(x).pow(2).sum().item() / 10, rel=1e-5)


def test_replay_restores_the_global_rng():
    state = RngState.capture({"x": torch.zeros(1)})
    first = torch.rand(3)
    after = torch.rand(1)
    with replay_rng(state):
        assert torch.equal(torch.rand(3), first)  # the recorded stream again
    assert not torch.equal(torch.rand(1), after)  # the global stream went on, not rewound


def test_bad_inputs():
    with pytest.raises(ValueError, match="at least one chunk"):
        grad_cache_step([], lambda c: c["x"], contrastive)
    model = encoder(0.0)
    chunks = split_batch({"x": torch.randn(4, 6)}, 2)
    reps, states = forward_no_grad(lambda c: model(c["x"]), chunks)
    assert reps.shape == (4, 4) and len(states) == 2 and not reps.requires_grad
    with pytest.raises(ValueError, match="re-forward produced"):  # a forward that drops rows
        grad_cache_step(chunks, lambda c: model(c["x"]), contrastive,
                        forward=lambda c: (model(c["x"])[:1], None))
    with pytest.raises(ValueError, match="chunk 1: the re-forward gave"):  # one that adds rows
        grad_cache_step(chunks, lambda c: model(c["x"]), contrastive,
                        forward=lambda c: (torch.cat([model(c["x"])] * 2), None))
