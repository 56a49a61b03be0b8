"""DDP plumbing: join a torchrun job, all-gather with gradients, train one global batch over G processes.

``all_gather_with_grad`` is the piece plain ``torch.distributed.all_gather`` lacks: the gathered
copy carries gradients back to each worker's *own* embeddings (the backward pass sums every
worker's gradient for a slice with an all-reduce, then keeps the local slice); in a single process
it returns its input. With DDP averaging gradients over G workers, each worker's gradient divided by
G is exactly the single-process gradient of the loss on the global batch (tests/test_distributed.py
checks this with 2 processes on the gloo backend). RocketQA's cross-batch negatives are built on it
(``retrlab.methods.rocketqa``).

Training under ``torchrun`` (docs/design.md): ``setup()`` joins the process group (nccl on GPUs,
gloo on CPUs) and ``train_distributed`` runs ``retrlab.train.train`` with PyTorch's
``DistributedDataParallel``: every rank draws the same global batch, embeds its shard, and
``DistributedContrastiveStep`` scores its queries against every rank's passages. Loss, gradients
and weights then equal the one-process run on the same global batch (tests/test_ddp.py, 2 gloo
processes started by torchrun). ``examples/train_ddp.py`` is a complete script.
"""
from __future__ import annotations

import os
from typing import TYPE_CHECKING

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel as DDP

from retrlab.losses import gathered_loss
from retrlab.utils import default_device

if TYPE_CHECKING:  # imported where used: a worker that only all-gathers stays lean (no transformers)
    from retrlab.data.dataset import RetrievalData
    from retrlab.encoders import BiEncoder
    from retrlab.train import Batch, History, Hook, Sampler, TrainConfig


def is_distributed() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def rank() -> int:
    return dist.get_rank() if is_distributed() else 0


def world_size() -> int:
    return dist.get_world_size() if is_distributed() else 1


class _AllGather(torch.autograd.Function):
    """(P, H) local rows -> (G·P, H), worker w's rows at ``[w·P, (w+1)·P)``; backward sums over workers."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        parts = [torch.empty_like(x) for _ in range(dist.get_world_size())]
        dist.all_gather(parts, x.contiguous())
        ctx.rows = len(x)
        return torch.cat(parts)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        grad = grad.contiguous().clone()
        dist.all_reduce(grad)  # every worker's loss used every worker's rows: sum their gradients
        start = dist.get_rank() * ctx.rows
        return grad[start:start + ctx.rows]


def all_gather_with_grad(x: torch.Tensor) -> torch.Tensor:
    """Concatenate ``x`` (same shape on every worker) over all workers; identity in one process."""
    if not is_distributed():
        return x
    sizes = [torch.zeros(1, dtype=torch.long, device=x.device) for _ in range(world_size())]
    dist.all_gather(sizes, torch.tensor([len(x)], device=x.device))  # nccl only moves GPU tensors
    if len({int(s) for s in sizes}) != 1:
        raise ValueError(f"all workers must gather the same number of rows, got {[int(s) for s in sizes]}")
    return _AllGather.apply(x)


# --- training under torchrun: DistributedDataParallel with cross-device negatives ------------------
def setup(backend: str | None = None) -> torch.device:
    """Join the process group that ``torchrun`` describes; returns this process's device.

    torchrun sets ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR`` and ``MASTER_PORT``.
    With a GPU each process takes the one of its ``LOCAL_RANK`` (so every ``BiEncoder`` built
    afterwards lands there) and talks over nccl; on CPUs, over gloo. Outside torchrun (no
    ``WORLD_SIZE``) it does nothing: training then runs in this one process.
    """
    device = default_device()
    if "WORLD_SIZE" not in os.environ:
        return device
    if device.type == "cuda":
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
        torch.cuda.set_device(device)  # "cuda" now means this process's GPU
    if not dist.is_initialized():
        dist.init_process_group(backend or ("nccl" if device.type == "cuda" else "gloo"))
    return device


def cleanup() -> None:
    """Leave the process group (call once at the end of a torchrun script)."""
    if dist.is_initialized():
        dist.destroy_process_group()


def shard(batch: Batch, index: int, shards: int) -> Batch:
    """Worker ``index``'s rows of the global batch: queries ``[index·B/G, (index+1)·B/G)``."""
    from retrlab.train import Batch

    if len(batch.qids) % shards:
        raise ValueError(f"the global batch of {len(batch.qids)} queries does not split into {shards} "
                         f"equal shards: choose a batch_size divisible by the number of processes")
    per = len(batch.qids) // shards
    rows = slice(index * per, (index + 1) * per)
    return Batch(batch.qids[rows], batch.queries[rows], batch.positive_pids[rows], batch.negative_pids[rows])


def passage_pids(batch: Batch) -> list[str]:
    """A worker's passages in RocketQA's layout: ``[its positives ; its hard negatives]``."""
    return batch.positive_pids + [p for row in batch.negative_pids for p in row]


def gathered_passage_pids(batch: Batch, shards: int) -> list[str]:
    """The pids of the all-gathered passage matrix: shard 0's passages, then shard 1's, ..."""
    per_shard = [passage_pids(shard(batch, g, shards)) for g in range(shards)]
    if len({len(p) for p in per_shard}) != 1:
        raise ValueError(f"every shard needs the same number of passages (all-gather), got "
                         f"{[len(p) for p in per_shard]}: give every query the same number of negatives")
    return [pid for pids in per_shard for pid in pids]


class _Towers(torch.nn.Module):
    """What DDP wraps: one forward that embeds queries and passages, so DDP sees every use of the weights."""

    def __init__(self, model: BiEncoder) -> None:
        super().__init__()
        self.model = model

    def forward(self, queries: list[str], passages: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        return self.model.embed_queries(queries), self.model.embed_passages(passages)


class DistributedContrastiveStep:
    """``train(step_fn=...)`` under torchrun: this rank's shard of the global batch, every rank's passages.

    Every rank draws the same global batch (same seed), keeps its shard (``shard``), embeds its
    queries (B/G, H) and passages (P, H) through DDP, all-gathers the passages with gradients
    (G·P, H) and scores its queries against all of them; labelled positives of a query found in
    another shard are excluded, as in ``retrlab.train.contrastive_loss``. The returned loss has
    the value of the global-batch loss (the mean over ranks, what ``History`` logs on every rank)
    and the gradient of this rank's loss, which DDP averages: exactly the single-process gradient.
    ``gathered_pids`` and ``gathered`` (G·P, H) keep the last step's gathered passages, for inspection.
    """

    def __init__(self, model: BiEncoder) -> None:
        device_ids = [model.device.index] if model.device.type == "cuda" else None
        # unused: weights no forward touches (e.g. MiniLM's pooler), which DDP must be told about
        self.ddp = DDP(_Towers(model), device_ids=device_ids, find_unused_parameters=True)
        self.gathered_pids: list[str] = []
        self.gathered: torch.Tensor | None = None

    def __call__(self, model: BiEncoder, data: RetrievalData, batch: Batch, tau: float) -> torch.Tensor:
        from retrlab.train import known_positive_mask

        local = shard(batch, rank(), world_size())
        self.gathered_pids = gathered_passage_pids(batch, world_size())
        q, p = self.ddp(local.queries, data.passage_texts(passage_pids(local)))  # (B/G, H), (P, H)
        exclude = known_positive_mask(data, local, self.gathered_pids).to(q.device)  # (B/G, G·P)
        gathered = all_gather_with_grad(p)  # (G·P, H), gradients flow back to the rank that embedded a row
        self.gathered = gathered.detach()
        loss = gathered_loss(q, gathered, len(p), rank(), tau, exclude)
        mean = loss.detach().clone()
        dist.all_reduce(mean)  # sum over ranks
        return loss + (mean / world_size() - loss.detach())  # value: global loss; gradient: this rank's


def train_distributed(model: BiEncoder, data: RetrievalData, config: TrainConfig,
                      sampler: Sampler | None = None, hooks: list[Hook] = (),
                      progress: bool = True, **kwargs) -> History:
    """``retrlab.train.train`` with DDP when run under ``torchrun`` (plain ``train`` otherwise).

    ``config.batch_size`` is the *global* batch: each of the G processes embeds B/G queries and
    their passages and sees the G·(B/G)·(1 + n) passages of all ranks as negatives, so the loss
    and the update equal the one-process run on the same batch (tests/test_ddp.py). Hooks run on
    every rank: a hook that changes the sampler (ANCE's refresh) must, so ranks keep drawing the
    same batches; only rank 0 shows the progress bar and writes checkpoints. Pass
    ``step_fn=DistributedContrastiveStep(model)`` yourself to keep a handle on what it gathers.
    """
    from retrlab.train import no_negatives, train

    sampler = sampler or no_negatives
    if not is_distributed():
        return train(model, data, config, sampler, hooks, progress=progress, **kwargs)
    if config.batch_size % world_size():
        raise ValueError(f"batch_size {config.batch_size} (the global batch) must be divisible by the "
                         f"{world_size()} processes")
    step_fn = kwargs.pop("step_fn", None) or DistributedContrastiveStep(model)
    return train(model, data, config, sampler, hooks, step_fn=step_fn, progress=progress and rank() == 0,
                 **kwargs)
