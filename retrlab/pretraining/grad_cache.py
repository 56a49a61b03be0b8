"""Gradient cache: a contrastive loss over a batch far larger than one forward pass can hold.

Gao, Zhang, Han & Callan, RepL4NLP 2021, "Scaling Deep Contrastive Learning Batch Size under
Memory Limited Setup"; official code luyug/GradCache ``src/grad_cache/grad_cache.py`` (class
``GradCache``: ``forward_no_grad``, ``build_cache``, ``forward_backward``), used by coCondenser's
``trainer.py: CoCondenserPretrainer.training_step``.

A contrastive loss couples every example of the batch through the representations ``r`` only, so
the chain rule splits at ``r``: ``∂L/∂θ = Σ_i (∂L/∂r_i) · ∂r_i/∂θ``. Four steps:

1. ``forward_no_grad``: encode the batch chunk by chunk *without* a graph, keep only ``r`` (N, H);
2. ``build_cache``: compute the loss on ``r`` (a leaf tensor) and back-propagate to ``∂L/∂r`` (N, H);
3. ``forward_backward``: re-encode each chunk *with* a graph and back-propagate the surrogate
   ``Σ_i r_i · (∂L/∂r_i)`` (plus any per-chunk loss, e.g. MLM), so only one chunk's graph is alive;
4. the caller takes one optimizer step.

The parameter gradients equal the full-batch ones in real arithmetic (float rounding differs). The
re-forward must see the same dropout masks as the first pass, otherwise ``∂L/∂r`` was computed at
other representations: like GradCache's ``RandContext`` we record the RNG state before each chunk's
first forward and replay it for the second (``torch.utils.checkpoint``'s device-state helpers).
Cost: one extra graph-less forward (GradCache reports ≈ 20% more time); memory: one chunk.
"""
from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass

import torch
from torch.utils.checkpoint import get_device_states, set_device_states

Chunk = dict[str, torch.Tensor]  # model inputs of one chunk, rows = examples


def split_batch(batch: Chunk, chunk_size: int) -> list[Chunk]:
    """Cut every tensor of ``batch`` into consecutive row chunks of ``chunk_size`` (last may be smaller)."""
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be a positive integer, got {chunk_size}")
    rows = {len(v) for v in batch.values()}
    if len(rows) != 1:
        raise ValueError(f"every tensor of the batch needs the same number of rows, got {sorted(rows)}")
    keys = list(batch)
    return [dict(zip(keys, parts)) for parts in zip(*(batch[k].split(chunk_size) for k in keys))]


@dataclass
class RngState:
    """The CPU generator's state and, for the chunk's CUDA tensors, their devices' states."""
    cpu: torch.Tensor
    devices: list
    device_states: list

    @classmethod
    def capture(cls, chunk: Chunk) -> RngState:
        devices, states = get_device_states(*chunk.values())
        return cls(torch.get_rng_state(), devices, states)


@contextmanager
def replay_rng(state: RngState) -> Iterator[None]:
    """Run the block with the recorded RNG state; the global state is restored afterwards."""
    with torch.random.fork_rng(devices=state.devices):
        torch.set_rng_state(state.cpu)
        set_device_states(state.devices, state.device_states)
        yield


def forward_no_grad(represent: Callable[[Chunk], torch.Tensor],
                    chunks: list[Chunk]) -> tuple[torch.Tensor, list[RngState]]:
    """Step 1: (N, H) representations of all chunks, no graph, and each chunk's RNG state."""
    reps, states = [], []
    with torch.no_grad():
        for chunk in chunks:
            states.append(RngState.capture(chunk))
            reps.append(represent(chunk))
    return torch.cat(reps), states


def build_cache(reps: torch.Tensor,
                loss_fn: Callable[[torch.Tensor], torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """Step 2: the loss on the cached representations and its gradient ``∂L/∂r`` (N, H)."""
    leaf = reps.detach().requires_grad_()
    loss = loss_fn(leaf)
    loss.backward()
    return leaf.grad, loss.detach()


def forward_backward(forward: Callable[[Chunk], tuple[torch.Tensor, torch.Tensor | None]],
                     chunks: list[Chunk], cache: torch.Tensor, states: list[RngState] | None) -> float:
    """Step 3: re-encode chunk by chunk with a graph, back-propagate ``r · ∂L/∂r`` (+ the chunk's
    own loss) and free the graph. ``states=None`` skips the RNG replay (only for demonstrations).
    Returns the sum of the chunks' own losses."""
    local_total, offset = 0.0, 0
    for i, chunk in enumerate(chunks):
        with replay_rng(states[i]) if states is not None else nullcontext():
            reps, local_loss = forward(chunk)
        grads = cache[offset:offset + len(reps)]  # this chunk's rows of ∂L/∂r
        offset += len(reps)
        if grads.shape != reps.shape:
            raise ValueError(f"chunk {i}: the re-forward gave {tuple(reps.shape)}, the cache holds "
                             f"{tuple(grads.shape)} for it")
        surrogate = torch.dot(reps.flatten(), grads.flatten())  # its gradient w.r.t. θ: Σ_i g_i · ∂r_i/∂θ
        if local_loss is not None:
            surrogate = surrogate + local_loss
            local_total += local_loss.item()
        surrogate.backward()
    if offset != len(cache):
        raise ValueError(f"the re-forward produced {offset} representations, the cache holds {len(cache)}")
    return local_total


@dataclass
class GradCacheResult:
    loss: float  # the batch loss on the cached representations
    local_loss: float  # the sum of the chunks' own losses (0 when there are none)


def grad_cache_step(chunks: list[Chunk], represent: Callable[[Chunk], torch.Tensor],
                    loss_fn: Callable[[torch.Tensor], torch.Tensor],
                    forward: Callable[[Chunk], tuple[torch.Tensor, torch.Tensor | None]] | None = None,
                    replay: bool = True) -> GradCacheResult:
    """Accumulate into ``.grad`` the gradient of ``loss_fn(all representations) + Σ chunk losses``.

    ``represent(chunk) -> (n, H)`` is the graph-less encoder of step 1; ``forward(chunk) -> (reps,
    chunk_loss or None)`` the one re-run with a graph in step 3 (default: ``represent`` and no chunk
    loss). ``forward`` must draw its representation's randomness first, as ``represent`` does, so
    that the replayed RNG gives it the same dropout masks. The caller zeroes the gradients before
    and steps the optimizer after.
    """
    if not chunks:
        raise ValueError("grad_cache_step needs at least one chunk")
    forward = forward or (lambda chunk: (represent(chunk), None))
    reps, states = forward_no_grad(represent, chunks)
    cache, loss = build_cache(reps, loss_fn)
    local = forward_backward(forward, chunks, cache, states if replay else None)
    return GradCacheResult(loss.item(), local)
