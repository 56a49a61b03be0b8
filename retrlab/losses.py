"""Contrastive losses for dense retrieval, as small pure functions on score tensors.

Two families appear in the papers, and the difference matters (docs/methods.md, losses):

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


def compute_star_loss(positive_scores: torch.Tensor, negative_scores: torch.Tensor,
                      keep: torch.Tensor, tau: float = 1.0) -> torch.Tensor:
    """Mean pairwise softmax loss over the kept (query, negative) pairs.

    ``positive_scores`` (B,) s(q_i, d_i+); ``negative_scores`` (B, C) s(q_i, d_c) for every
    candidate negative column; ``keep`` (B, C) bool, False for pairs that must not count (the
    query's own positive, a labelled positive of the query, a group switched off).
    Returns ``sum softplus((s_ic - s_i+)/τ) over kept pairs / number of kept pairs``.
    """
    if tau <= 0:
        raise ValueError(f"temperature must be > 0, got {tau}")
    if negative_scores.shape != keep.shape or negative_scores.shape[0] != positive_scores.shape[0]:
        raise ValueError(f"shapes disagree: positives {tuple(positive_scores.shape)}, "
                         f"negatives {tuple(negative_scores.shape)}, keep {tuple(keep.shape)}")
    if not keep.any():
        raise ValueError("no (query, negative) pair is kept: nothing to learn from")
    pair_losses = F.softplus((negative_scores - positive_scores[:, None]) / tau)  # (B, C)
    return (pair_losses * keep).sum() / keep.sum()


def compute_adore_weights(n: int, metric_cut: int | None = None) -> torch.Tensor:
    """(n, n) ``|1/rank_i - 1/rank_j|`` for ranks 1..n, with ``1/rank = 0`` beyond ``metric_cut``."""
    inverse = 1.0 / torch.arange(1, n + 1, dtype=torch.float32)  # (n,)
    if metric_cut is not None:
        inverse[metric_cut:] = 0.0
    return (inverse[:, None] - inverse[None, :]).abs()


def compute_adore_loss(scores: torch.Tensor, relevant: torch.Tensor, weights: torch.Tensor,
                       tau: float = 1.0) -> torch.Tensor:
    """One query's loss: ``sum_{i rel, j non-rel} w_ij softplus((s_j - s_i)/τ) / (2 · #pairs)``.

    ``scores`` (n,) the query against its ranked list (retrieved, then any appended positives);
    ``relevant`` (n,) bool; ``weights`` (n, n) from ``compute_adore_weights``.
    """
    if tau <= 0:
        raise ValueError(f"temperature must be > 0, got {tau}")
    if not (scores.shape == relevant.shape and weights.shape == (len(scores), len(scores))):
        raise ValueError(f"shapes disagree: scores {tuple(scores.shape)}, relevant "
                         f"{tuple(relevant.shape)}, weights {tuple(weights.shape)}")
    pairs = relevant[:, None] & ~relevant[None, :]  # (n, n) i relevant, j not
    if not pairs.any():
        raise ValueError("the list needs at least one relevant and one non-relevant passage")
    costs = F.softplus((scores[None, :] - scores[:, None]) / tau)  # [i, j] = softplus((s_j - s_i)/τ)
    return (weights * costs * pairs).sum() / (2 * pairs.sum())


def ar2_retriever_loss(retriever_scores: torch.Tensor, ranker_scores: torch.Tensor, lam: float = 0.5,
                       teacher_tau: float = 1.0) -> torch.Tensor:
    """AR2's retriever loss ``λ·L_adv + (1−λ)·L_kd`` on (B, 1+n) group scores, positive in column 0."""
    if not 0.0 <= lam <= 1.0:
        raise ValueError(f"lambda must be in [0, 1], got {lam}")
    return (lam * ar2_adversarial_loss(retriever_scores, ranker_scores)
            + (1 - lam) * kl_distillation_loss(retriever_scores, ranker_scores, teacher_tau))


def gathered_loss(queries: torch.Tensor, gathered: torch.Tensor, per_worker: int, worker: int = 0,
                  tau: float = 1.0, exclude: torch.Tensor | None = None) -> torch.Tensor:
    """RocketQA's cross-batch loss of one worker: local queries (B, H) against every worker's passages.

    ``gathered`` (G·P, H) holds worker w's ``[positives ; negatives]`` at rows ``[w·P, (w+1)·P)``;
    query i of worker ``worker`` has its positive at column ``worker·P + i``; listwise loss over the row.
    """
    targets = worker * per_worker + torch.arange(len(queries), device=queries.device)
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
