"""Contrastive losses for dense retrieval, as small pure functions on score tensors.

Two families appear in the papers, and the difference matters (METHODS.md, part D4):

* **listwise** InfoNCE / "NLL" (DPR, RocketQA, coCondenser, AR2, sentence-transformers'
  MultipleNegativesRankingLoss): one softmax over the positive and *all* negatives,
  ``L = -log e^{s+/τ} / (e^{s+/τ} + Σ_j e^{s-_j/τ})``;
* **pairwise** softmax (ANCE's ``NLL.forward``, STAR's ``inbatch_train``): each (positive,
  negative) pair normalised on its own, ``L = -log e^{s+} / (e^{s+} + e^{s-}) = softplus(s- - s+)``.

DPR uses no temperature on raw dot products; with L2-normalised embeddings (cosine in [-1, 1])
a temperature is needed: sentence-transformers' scale 20 is τ = 0.05.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


def in_batch_scores(queries: torch.Tensor, positives: torch.Tensor,
                    negatives: torch.Tensor | None = None) -> torch.Tensor:
    """(B, H) queries x [(B, H) positives ; (N, H) extra negatives] -> (B, B + N) dot products.

    Row i's positive is column i; every other column is a negative for query i (DPR's in-batch
    negatives: the other queries' positives, plus every hard negative in the batch).
    """
    passages = positives if negatives is None else torch.cat([positives, negatives])
    return queries @ passages.T


def listwise_loss(scores: torch.Tensor, targets: torch.Tensor, tau: float = 1.0,
                  exclude: torch.Tensor | None = None) -> torch.Tensor:
    """Softmax cross-entropy over each row of ``scores`` (B, C); ``targets`` (B,) the positive column.

    ``exclude`` (B, C) bool marks columns to drop from a row's softmax (e.g. a passage that is
    also relevant to that query, or a duplicate text): they get -inf before the softmax.
    """
    if tau <= 0:
        raise ValueError(f"temperature must be > 0, got {tau}")
    logits = scores / tau
    if exclude is not None:
        keep_target = F.one_hot(targets, logits.shape[1]).bool()
        logits = logits.masked_fill(exclude & ~keep_target, float("-inf"))
    return F.cross_entropy(logits, targets)


def info_nce_loss(queries: torch.Tensor, positives: torch.Tensor, negatives: torch.Tensor | None = None,
                  tau: float = 1.0, exclude: torch.Tensor | None = None) -> torch.Tensor:
    """Listwise InfoNCE with in-batch negatives and optional extra (hard) negatives."""
    scores = in_batch_scores(queries, positives, negatives)
    targets = torch.arange(len(queries), device=scores.device)
    return listwise_loss(scores, targets, tau, exclude)


def pairwise_softplus_loss(positive_scores: torch.Tensor, negative_scores: torch.Tensor) -> torch.Tensor:
    """Mean of ``softplus(s- - s+) = -log sigmoid(s+ - s-)`` over matching pairs (ANCE's NLL)."""
    return F.softplus(negative_scores - positive_scores).mean()
