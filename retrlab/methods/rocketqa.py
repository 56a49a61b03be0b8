"""RocketQA: cross-batch negatives, denoised hard negatives and pseudo labels (Qu et al., NAACL 2021).

Official code ``PaddlePaddle/RocketQA``, ``research/RocketQA_NAACL2021``:

* **cross-batch negatives** (``model/src/finetune/dual_encoder.py``): each worker's passages
  ``[positives (B) ; hard negatives (B)]`` go through an all-gather, so each of the B local
  queries is scored against the passages of all G workers: G·2B − 1 negatives instead of 2B − 1.
  ``cross_batch_loss`` is the real thing under ``torchrun`` (``retrlab.ddp.all_gather_with_grad``);
  ``cross_batch_step`` simulates G workers in one process (``retrlab.losses.simulated_cross_batch_loss``).
* **denoised hard negatives** (``data_process/construct_marco_train_de.py``): a retrieved passage
  is a usable negative only if the cross-encoder's probability is ``< ce_threshold_neg = 0.1``;
  the sampler is ``retrlab.negatives.denoise.denoised_from_pool``.
* **pseudo labels** (``data_process/construct_unlabel_train_de.py``): on an unlabelled query the
  top passage is a pseudo positive if its score is ``> ce_threshold_pos = 0.9``, the passages
  scoring ``< 0.1`` are pseudo negatives (``pseudo_labels``).

RocketQA's thresholds suit its ERNIE-large cross-encoder; ``tune_threshold`` picks them on dev for
ours, and ``filter_precision_recall`` grades the filter against wiki-car's ground truth, which the
rules themselves never see. See docs/methods.md, RocketQA.
"""
from __future__ import annotations

import numpy as np
import torch

from retrlab.ddp import all_gather_with_grad, rank
from retrlab.losses import gathered_loss, simulated_cross_batch_loss
from retrlab.negatives.denoise import check_threshold, keep_as_negative
from retrlab.train import known_positive_mask


def cross_batch_loss(queries: torch.Tensor, passages: torch.Tensor, tau: float = 1.0,
                     exclude: torch.Tensor | None = None) -> torch.Tensor:
    """This worker's listwise loss against every worker's passages.

    ``queries`` (B, H) and ``passages`` (P, H) are local, query i's positive in passage row i
    (RocketQA's layout: ``[positives ; negatives]``). Scores are (B, G·P); the target of query i
    is column ``rank·P + i``. ``exclude`` (B, G·P) drops known positives from a row's softmax.
    """
    if len(passages) < len(queries):
        raise ValueError(f"need a positive per query: {len(queries)} queries, {len(passages)} passages")
    return gathered_loss(queries, all_gather_with_grad(passages), len(passages), rank(), tau, exclude)


def cross_batch_step(shards: int):
    """A ``train(step_fn=...)`` computing RocketQA's cross-batch loss over ``shards`` simulated workers.

    The batch's B queries are cut into ``shards`` groups of B/G; shard g's passages are
    ``[its positives ; its hard negatives]``, and every query is scored against all shards' passages.
    Known (labelled) positives of a query that appear elsewhere in the batch are excluded, as in
    ``retrlab.train.contrastive_loss``.
    """
    if shards < 1:
        raise ValueError(f"shards must be >= 1, got {shards}")

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


def pseudo_labels(probabilities: np.ndarray, positive_threshold: float = 0.9,
                  negative_threshold: float = 0.1) -> tuple[int, np.ndarray]:
    """One unlabelled query's candidates -> (pseudo-positive index or -1, pseudo-negative indices).

    The pseudo positive is the best-scoring candidate if its p > ``positive_threshold``; pseudo
    negatives are the candidates with p < ``negative_threshold``, in their original order.
    """
    check_threshold(positive_threshold, "positive_threshold")
    check_threshold(negative_threshold, "negative_threshold")
    if negative_threshold > positive_threshold:
        raise ValueError(f"negative_threshold {negative_threshold} exceeds "
                         f"positive_threshold {positive_threshold}")
    probabilities = np.asarray(probabilities, dtype=np.float64)
    best = int(np.argmax(probabilities)) if len(probabilities) else -1
    positive = best if best >= 0 and probabilities[best] > positive_threshold else -1
    return positive, np.flatnonzero(probabilities < negative_threshold)


def tune_threshold(probabilities: np.ndarray, relevant: np.ndarray, target: float, rule: str) -> float:
    """Pick a RocketQA threshold on labelled data (dev), for a cross-encoder calibrated unlike RocketQA's.

    RocketQA's 0.1 / 0.9 suit its ERNIE-large cross-encoder; on your own data and model they should be
    tuned on dev (RocketQA issues #64, #65). With ``probabilities`` of candidates and their true
    ``relevant`` flags:

    * ``rule="negative"`` — the largest ``t`` such that of the candidates kept as negatives
      (``p < t``) at most a share ``target`` is relevant (0.0 if even the lowest-scored one is);
    * ``rule="positive"`` — the smallest ``t`` such that of the candidates with ``p > t`` at least a
      share ``target`` is relevant (1.0 if no ``t`` reaches it).
    """
    check_threshold(target, "target")
    p = np.asarray(probabilities, dtype=np.float64)
    r = np.asarray(relevant, dtype=bool)
    if p.shape != r.shape or p.ndim != 1 or not len(p):
        raise ValueError(f"need one relevance flag per probability, got {p.shape} and {r.shape}")
    cuts = np.unique(p)  # candidate thresholds: every observed score
    if rule == "negative":  # keep p < t: t = cuts[i] keeps the i lowest-scored distinct values
        ok = [t for t in cuts[1:].tolist() + [np.nextafter(cuts[-1], np.inf)] if r[p < t].mean() <= target]
        return float(max(ok)) if ok else 0.0
    if rule == "positive":  # pass p > t: t = cuts[i] passes everything above it
        ok = [t for t in [np.nextafter(cuts[0], -np.inf)] + cuts[:-1].tolist() if r[p > t].mean() >= target]
        return float(min(ok)) if ok else 1.0
    raise ValueError(f"rule must be 'negative' or 'positive', got {rule!r}")


def filter_precision_recall(probabilities: list[np.ndarray], hidden: list[np.ndarray],
                            thresholds: np.ndarray) -> dict[str, np.ndarray]:
    """Grade the filter "drop a candidate when p ≥ t" against the ground truth, for each t.

    ``probabilities[i]`` and ``hidden[i]`` align with query i's candidates. Returns arrays over
    ``thresholds``: ``precision`` (dropped candidates that are hidden positives; NaN when nothing
    is dropped), ``recall`` (hidden positives that get dropped) and ``dropped`` (share dropped).
    """
    p = np.concatenate([np.asarray(x, dtype=np.float64) for x in probabilities])
    h = np.concatenate([np.asarray(x, dtype=bool) for x in hidden])
    if p.shape != h.shape:
        raise ValueError(f"{p.size} probabilities but {h.size} ground-truth flags")
    precision, recall, dropped = [], [], []
    for t in np.asarray(thresholds, dtype=np.float64):
        drop = ~keep_as_negative(p, t)
        hits = int((drop & h).sum())
        precision.append(hits / drop.sum() if drop.any() else np.nan)
        recall.append(hits / h.sum() if h.any() else np.nan)
        dropped.append(drop.mean() if len(drop) else np.nan)
    return {"threshold": np.asarray(thresholds, dtype=np.float64), "precision": np.array(precision),
            "recall": np.array(recall), "dropped": np.array(dropped)}
