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


def kl_distillation_loss(student_scores: torch.Tensor, teacher_scores: torch.Tensor,
                         teacher_tau: float = 1.0) -> torch.Tensor:
    """``-Σ_i p_teacher(i) log p_student(i)``, averaged over rows of (B, C) score matrices.

    The cross-entropy form of distillation: it equals ``KL(p_teacher ‖ p_student)`` plus the
    teacher's entropy, a constant for the student, so both have the same gradient. AR2's
    ``normal_loss`` (``AR2/wiki/co_training_wiki_train.py``) with ``p_teacher = softmax(r / T)``;
    we use ``log_softmax`` where the official code adds ``eps = 1e-7`` inside the log.
    The teacher's scores are detached: only the student learns.
    """
    if teacher_tau <= 0:
        raise ValueError(f"teacher temperature must be > 0, got {teacher_tau}")
    if student_scores.shape != teacher_scores.shape:
        raise ValueError(f"student {tuple(student_scores.shape)} and teacher {tuple(teacher_scores.shape)} "
                         "scores must have the same shape")
    teacher = torch.softmax(teacher_scores.detach() / teacher_tau, dim=-1)
    return -(teacher * torch.log_softmax(student_scores, dim=-1)).sum(-1).mean()


def ar2_rewards(ranker_scores: torch.Tensor) -> torch.Tensor:
    """(B, C) ranker scores, positive in column 0 -> (B, C) rewards ``log σ(r+ - r_i)`` (≤ 0).

    ``reward_i = log(e^{r+} / (e^{r+} + e^{r_i}))``: the ranker's log-probability that the positive
    beats candidate i. Near 0 for an easy negative, very negative for one that fools the ranker;
    the positive's own reward is ``log 1/2``. No gradient: rewards are constants for the retriever.
    """
    r = ranker_scores.detach()
    return F.logsigmoid(r[:, :1] - r)


def ar2_adversarial_loss(retriever_scores: torch.Tensor, ranker_scores: torch.Tensor) -> torch.Tensor:
    """AR2's REINFORCE term ``Σ_i reward_i · log p_θ(i)``, averaged over rows (positive in column 0).

    ``p_θ = softmax(retriever_scores)`` over the group. Minimising it raises ``log p_θ(i)`` most for
    the candidates with the most negative reward — the negatives the ranker finds hard — so the
    retriever learns to retrieve what confuses the ranker. The official code sums over the batch
    (``adv_loss.sum()``); we average over rows so λ does not depend on the batch size.
    """
    if retriever_scores.shape != ranker_scores.shape:
        raise ValueError(f"retriever {tuple(retriever_scores.shape)} and ranker {tuple(ranker_scores.shape)} "
                         "scores must have the same shape")
    return (ar2_rewards(ranker_scores) * torch.log_softmax(retriever_scores, dim=-1)).sum(-1).mean()
