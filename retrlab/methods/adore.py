"""ADORE: train the query encoder only, against the current top-k of a frozen passage index.

Zhan et al., *Optimizing Dense Retrieval Model Training with Hard Negatives*, SIGIR 2021; official
code jingtaozhan/DRhard ``adore/train.py``. The passage encoder (from STAR) and its index are
frozen, so "dynamic" hard negatives cost one search per step instead of a corpus re-encode (ANCE):

1. encode the batch's queries with the trainable query tower; search the fixed index top-k;
2. label each retrieved passage relevant / not (labelled positives only); if no relevant passage
   was retrieved, append the labelled positives at the end of the list;
3. LambdaRank-style pairwise loss over every (relevant i, non-relevant j) pair of the list:
   ``C_ij = softplus(-(s_i - s_j))`` weighted by ``|1/rank_i - 1/rank_j|`` (ΔMRR when the two
   swap; ``1/rank = 0`` past ``metric_cut``: ``metric_weights``), summed, divided by
   2·#pairs (``num_pairs = 2 * num_pos_pairs``), averaged over the batch (docs/methods.md, ADORE).

Deviations: scores are cosines of normalised MiniLM vectors, divided by a temperature τ before
the softplus (DRhard: raw dot products, no τ). The stored official file writes both ``C_pos`` and
``C_neg`` as ``log(1 + exp(y_i - y_j))``; we use the LambdaRank sign for every pair (the relevant
passage should score higher), i.e. one term ``softplus((s_j - s_i)/τ)`` per (relevant, non-relevant) pair.
"""
from __future__ import annotations

import numpy as np
import torch

from retrlab.data.dataset import RetrievalData
from retrlab.encoders import BiEncoder
from retrlab.index import FlatIndex
from retrlab.losses import compute_adore_loss, compute_adore_weights
from retrlab.train import Batch


def ranked_list(retrieved: list[str], labelled: set[str]) -> tuple[list[str], list[bool]]:
    """The retrieved pids with relevance flags; the labelled positives appended when none was retrieved."""
    flags = [p in labelled for p in retrieved]
    if not any(flags):
        extra = sorted(labelled)
        return retrieved + extra, flags + [True] * len(extra)
    return list(retrieved), flags


class AdoreStep:
    """A ``step_fn`` for ``retrlab.train.train``: ADORE on a frozen passage index.

    ``passage_vectors`` (N, H) are the frozen passage tower's vectors of ``pids`` (computed once).
    The model's passage tower must be frozen (``freeze_passage_tower``) so only queries train.
    """

    def __init__(self, passage_vectors: np.ndarray, pids: list[str], k: int = 200,
                 metric_cut: int | None = None) -> None:
        if len(passage_vectors) != len(pids):
            raise ValueError(f"{len(passage_vectors)} vectors for {len(pids)} pids")
        self.index = FlatIndex(passage_vectors)
        self.vectors = torch.from_numpy(np.ascontiguousarray(passage_vectors, dtype=np.float32))
        self.pids, self.row = pids, {p: i for i, p in enumerate(pids)}
        self.k, self.metric_cut = k, metric_cut if metric_cut is not None else k
        self.train_mrr: list[float] = []  # MRR@10 of the labelled positive in each step's retrieval
        self.picks: list[tuple[str, list[str]]] = []  # (qid, the non-relevant passages of its list) per step

    def __call__(self, model: BiEncoder, data: RetrievalData, batch: Batch, tau: float) -> torch.Tensor:
        q = model.embed_queries(batch.queries)  # (B, H), the only thing with gradients
        _, rows = self.index.search(q.detach().cpu().numpy(), self.k)  # (B, k) current top-k
        losses, reciprocal = [], []
        for qid, q_vec, row in zip(batch.qids, q, rows):
            retrieved = [self.pids[r] for r in row if r >= 0]
            labelled = set(data.positives[qid])
            pids, flags = ranked_list(retrieved, labelled)
            self.picks.append((qid, [p for p, f in zip(pids, flags) if not f]))  # the negatives it trains on
            first = next((i for i, f in enumerate(flags[:10]) if f and i < len(retrieved)), None)
            reciprocal.append(0.0 if first is None else 1 / (first + 1))
            docs = self.vectors[[self.row[p] for p in pids]].to(q.device)  # (n, H) constants
            weights = compute_adore_weights(len(pids), self.metric_cut).to(q.device)
            losses.append(compute_adore_loss(docs @ q_vec, torch.tensor(flags, device=q.device), weights, tau))
        self.train_mrr.append(float(np.mean(reciprocal)))
        return torch.stack(losses).mean()


def freeze_passage_tower(model: BiEncoder) -> BiEncoder:
    """``model`` with separate towers (a shared one is copied) and its passage tower frozen."""
    if model.shared:
        model = BiEncoder(model.query_model, model.tokenizer, shared=False, **{
            k: v for k, v in model.settings().items() if k != "shared"})
    for p in model.passage_model.parameters():
        p.requires_grad_(False)
    return model
