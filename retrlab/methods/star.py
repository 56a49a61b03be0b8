"""STAR: static hard negatives mined once, stabilised by random (in-batch) negatives.

Zhan et al., *Optimizing Dense Retrieval Model Training with Hard Negatives*, SIGIR 2021; official
code jingtaozhan/DRhard: ``star/prepare_hardneg.py`` (mine the top-200 of a warm-up model once,
drop the labelled positives), ``dataset.py: TrainInbatchWithHardDataset`` (one hard negative per
query, drawn uniformly from those 200) and ``model.py: inbatch_train`` (the loss below).

The loss is *pairwise*: every (query i, negative document d) pair is its own two-way softmax
against query i's positive, ``-log e^{s_ii} / (e^{s_ii} + e^{s_id}) = softplus(s_id - s_ii)``.
Two groups of pairs enter it:

* **random negatives** — the other queries' positives in the batch (``batch_scores`` in the
  official code), free because they are encoded anyway;
* **hard negatives** — every hard document in the batch (the query's own static negative and the
  other queries' ones, ``hard_batch_scores``).

Pairs whose document is a labelled positive of the query are masked (``rel_pair_mask``,
``hard_pair_mask``); the loss is the sum over both groups divided by the number of pairs kept, so
the paper's weight α between the groups is effectively 1 (DRhard issue #20).

Deviations: MiniLM's vectors are L2-normalised (cosines in [-1, 1]), so scores are divided by a
temperature τ before the softplus (DRhard uses raw dot products of RoBERTa + LayerNorm vectors);
``random_negatives=False`` (static hard negatives only, the paper's unstable baseline) keeps only
each query's *own* hard negative, since the other queries' hard documents are random draws too.
"""
from __future__ import annotations

import torch

from retrlab.data.dataset import RetrievalData
from retrlab.encoders import BiEncoder
from retrlab.losses import compute_star_loss
from retrlab.negatives.uniform import Sampler, uniform_from_pool
from retrlab.pool import CandidatePool
from retrlab.train import Batch, History, Hook, TrainConfig, known_positive_mask, train


def star_pair_mask(data: RetrievalData, batch: Batch, random_negatives: bool = True,
                   hard_negatives: bool = True) -> torch.Tensor:
    """(B, B + N) bool: which (query, document) pairs of a batch enter STAR's loss.

    Columns: the B in-batch positives, then the N hard negatives in batch order. The diagonal (the
    query's own positive) and every labelled positive of the query are dropped; the switches turn
    the random group (other queries' documents) and the hard group off.
    """
    hard = [p for row in batch.negative_pids for p in row]
    owner = torch.tensor([i for i, row in enumerate(batch.negative_pids) for _ in row], dtype=torch.long)
    b = len(batch.qids)
    keep = ~known_positive_mask(data, batch, batch.positive_pids + hard)  # (B, B + N)
    keep[:, :b] &= ~torch.eye(b, dtype=torch.bool)  # own positive is not a negative
    own = owner[None, :] == torch.arange(b)[:, None]  # (B, N) the query's own hard negatives
    if not random_negatives:
        keep[:, :b] = False
        keep[:, b:] &= own
    if not hard_negatives:
        keep[:, b:] = False
    return keep


def star_step(random_negatives: bool = True, hard_negatives: bool = True):
    """A ``step_fn`` for ``retrlab.train.train``: STAR's pairwise loss on one batch.

    ``star_step()`` is STAR's mix; ``star_step(random_negatives=False)`` static hard negatives
    only; ``star_step(hard_negatives=False)`` random (in-batch) negatives only.
    """
    if not (random_negatives or hard_negatives):
        raise ValueError("switch on at least one group of negatives")

    def step_fn(model: BiEncoder, data: RetrievalData, batch: Batch, tau: float) -> torch.Tensor:
        hard = [p for row in batch.negative_pids for p in row]
        if hard_negatives and not hard:
            raise ValueError("hard_negatives=True but the sampler returned no negatives")
        q = model.embed_queries(batch.queries)  # (B, H)
        d = model.embed_passages(data.passage_texts(batch.positive_pids + hard))  # (B + N, H)
        scores = q @ d.T  # (B, B + N)
        keep = star_pair_mask(data, batch, random_negatives, hard_negatives).to(scores.device)
        return compute_star_loss(scores.diagonal(), scores, keep, tau)

    return step_fn


def static_hard_negatives(pool: CandidatePool, n: int = 1, depth: int | None = 200) -> Sampler:
    """STAR's sampler: ``n`` negatives drawn uniformly from the static pool's top-``depth``."""
    return uniform_from_pool(pool, n=n, depth=depth)


def train_star(model: BiEncoder, data: RetrievalData, pool: CandidatePool, config: TrainConfig,
               random_negatives: bool = True, hard_negatives: bool = True, sampler: Sampler | None = None,
               hooks: list[Hook] = (), progress: bool = True) -> History:
    """Train ``model`` in place with STAR (or one of its ablations) and return the history.

    ``sampler`` defaults to one static hard negative per query from ``pool``; pass another one
    (e.g. a ``RecordingSampler`` around it) to inspect the picks. This is the function notebook 02
    and ``retrlab.artifacts.star_retriever`` both call, so the cached STAR model is the notebook's.
    """
    if sampler is None:
        sampler = static_hard_negatives(pool, n=1) if hard_negatives else (lambda qid, rng: [])
    return train(model, data, config, sampler=sampler, hooks=hooks,
                 step_fn=star_step(random_negatives, hard_negatives), progress=progress)
