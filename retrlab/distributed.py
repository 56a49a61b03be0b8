"""Cross-batch negatives: gather passage embeddings from every worker, with gradients.

RocketQA (Qu et al., NAACL 2021, ``RocketQA_NAACL2021/model/src/finetune/dual_encoder.py``) puts
each worker's passages ``[positives (B) ; hard negatives (B)]`` through an all-gather, so that
each of the B local queries is scored against the passages of all G workers: G·2B − 1 negatives
instead of 2B − 1, for the price of one communication. The label of local query i on worker w is
column ``w·P + i`` of the gathered matrix (P = passages per worker).

``all_gather_with_grad`` is the piece plain ``torch.distributed.all_gather`` lacks: the gathered
copy carries gradients back to each worker's *own* embeddings (the backward pass sums every
worker's gradient for a slice with an all-reduce, then keeps the local slice). Under ``torchrun``
with several processes it communicates; in a single process it returns its input, and
``simulated_cross_batch_loss`` reproduces what G workers would compute, shard by shard, so one
CPU can show the same loss. With DDP averaging gradients over G workers, each worker's gradient
divided by G is exactly the single-process gradient of the loss on the global batch
(tests/test_distributed.py checks this with 2 processes on the gloo backend).
"""
from __future__ import annotations

import torch
import torch.distributed as dist

from retrlab.losses import listwise_loss


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
    sizes = [torch.zeros(1, dtype=torch.long) for _ in range(world_size())]
    dist.all_gather(sizes, torch.tensor([len(x)]))
    if len({int(s) for s in sizes}) != 1:
        raise ValueError(f"all workers must gather the same number of rows, got {[int(s) for s in sizes]}")
    return _AllGather.apply(x)


def cross_batch_loss(queries: torch.Tensor, passages: torch.Tensor, tau: float = 1.0,
                     exclude: torch.Tensor | None = None) -> torch.Tensor:
    """This worker's listwise loss against every worker's passages.

    ``queries`` (B, H) and ``passages`` (P, H) are local, query i's positive in passage row i
    (RocketQA's layout: ``[positives ; negatives]``). Scores are (B, G·P); the target of query i
    is column ``rank·P + i``. ``exclude`` (B, G·P) drops known positives from a row's softmax.
    """
    if len(passages) < len(queries):
        raise ValueError(f"need a positive per query: {len(queries)} queries, {len(passages)} passages")
    gathered = all_gather_with_grad(passages)  # (G·P, H)
    targets = rank() * len(passages) + torch.arange(len(queries), device=queries.device)
    return listwise_loss(queries @ gathered.T, targets, tau, exclude)


def simulated_cross_batch_loss(queries: list[torch.Tensor], passages: list[torch.Tensor], tau: float = 1.0,
                               exclude: list[torch.Tensor] | None = None) -> torch.Tensor:
    """What G workers compute, in one process: shard g's queries against all shards' passages.

    ``queries[g]`` (B, H) and ``passages[g]`` (P, H) are shard g's tensors, laid out as in
    ``cross_batch_loss``. Returns the mean of the G shard losses — the loss DDP's gradient
    averaging optimises — which equals the listwise loss over the whole global batch.
    """
    if len(queries) != len(passages):
        raise ValueError(f"{len(queries)} query shards but {len(passages)} passage shards")
    if len({len(p) for p in passages}) != 1:
        sizes = [len(p) for p in passages]
        raise ValueError(f"all shards must hold the same number of passages, got {sizes}")
    gathered = torch.cat(passages)  # (G·P, H): what all_gather returns on every worker
    losses = []
    for g, q in enumerate(queries):
        targets = g * len(passages[g]) + torch.arange(len(q), device=q.device)
        losses.append(listwise_loss(q @ gathered.T, targets, tau, None if exclude is None else exclude[g]))
    return torch.stack(losses).mean()


def cross_batch_step(shards: int):
    """A ``train(step_fn=...)`` computing RocketQA's cross-batch loss over ``shards`` simulated workers.

    The batch's B queries are cut into ``shards`` groups of B/G; shard g's passages are
    ``[its positives ; its hard negatives]``, and every query is scored against all shards' passages.
    Known (labelled) positives of a query that appear elsewhere in the batch are excluded, as in
    ``retrlab.train.contrastive_loss``.
    """
    from retrlab.train import known_positive_mask

    def step(model, data, batch, tau: float) -> torch.Tensor:
        size = len(batch.qids)
        if size % shards:
            raise ValueError(f"batch size {size} is not divisible into {shards} shards")
        per = size // shards
        cut = [slice(g * per, (g + 1) * per) for g in range(shards)]
        pids = [batch.positive_pids[c] + [p for row in batch.negative_pids[c] for p in row] for c in cut]
        counts = {len(x) for x in pids}
        if len(counts) != 1:
            raise ValueError("every shard needs the same number of hard negatives")
        q = model.embed_queries(batch.queries)  # (B, H)
        p = model.embed_passages(data.passage_texts([x for shard in pids for x in shard]))  # (G·P, H)
        exclude = known_positive_mask(data, batch, [x for shard in pids for x in shard]).to(q.device)
        width = counts.pop()
        return simulated_cross_batch_loss([q[c] for c in cut], list(p.split(width)), tau,
                                          [exclude[c] for c in cut])

    return step
