"""Train and use the cross-encoder that RocketQA (notebook 05) and AR2 (notebook 06) share.

RocketQA trains its cross-encoder ``M_C`` on labelled positives and negatives sampled from the
first retriever's top-k (``RocketQA_NAACL2021/data_process/construct_marco_train_ce.py``: 4
negatives per positive, a pointwise classifier) — and so does ``train_cross_encoder``: each step
takes B training queries, each query's labelled positive (label 1) and ``negatives`` candidates
drawn uniformly from the warm-up retriever's top-``depth`` pool (label 0), and minimises binary
cross-entropy on the logits. It sees the sparse labels only; the ground truth is used solely to
*evaluate* it (``rerank_report``).

The model is all-MiniLM-L6-v2 reading ``[CLS] q [SEP] p [SEP]`` jointly with the *segment-cosine*
head (``retrlab.encoders.CrossEncoder``), not RocketQA's [CLS] classifier: at this budget a new
[CLS] head stays at chance, the segment-cosine head starts from MiniLM's similarity and improves.
The encoder trains at ``lr``, the head's scale and offset at ``head_lr``.

``retrlab.artifacts.cross_encoder(data, smoke=...)`` builds it once (MiniLM weights, a new head) and
caches it under a key made of the data's fingerprint, the budget and the seed.
"""
from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from retrlab.data.dataset import RetrievalData
from retrlab.encoders import BiEncoder, CrossEncoder
from retrlab.evaluation import cached_corpus_embeddings, dense_run
from retrlab.metrics import evaluate, rank
from retrlab.pool import CandidatePool
from retrlab.train import History, Hook, Learner, Stage, run


@dataclass(frozen=True)
class CrossEncoderBudget:
    steps: int
    batch_size: int  # queries per step; each brings 1 positive and ``negatives`` negatives
    negatives: int
    max_length: int  # tokens of query + passage together
    depth: int = 30  # negatives are drawn from the retriever's top-``depth`` candidates
    lr: float = 5e-5
    seed: int = 0
    eval_queries: int = 40  # dev queries re-ranked for the report
    eval_depth: int = 10
    head: str = "segment-cosine"  # see retrlab.encoders.CrossEncoder: why not the [CLS] classifier here
    head_lr: float = 0.05  # the segment-cosine head's scale and offset

    def key(self) -> str:
        return (f"st{self.steps}-b{self.batch_size}-n{self.negatives}-L{self.max_length}-d{self.depth}"
                f"-lr{self.lr:g}-s{self.seed}-e{self.eval_queries}x{self.eval_depth}-{self.head}{self.head_lr:g}")


class CrossEncoderPairs:
    """Seeded training pairs: per query its labelled positive (label 1) and pool candidates (label 0)."""

    def __init__(self, data: RetrievalData, pool: CandidatePool, budget: CrossEncoderBudget) -> None:
        self.data, self.pool, self.budget = data, pool, budget
        self.qids = [q for q in pool.qids if data.positives.get(q) and pool.candidates(q)[0]]
        self.rng = random.Random(budget.seed)

    def __next__(self) -> tuple[list[str], list[str], list[float]]:
        queries, passages, labels = [], [], []
        for qid in self.rng.sample(self.qids, min(self.budget.batch_size, len(self.qids))):
            candidates = self.pool.candidates(qid)[0][:self.budget.depth]
            negatives = self.rng.sample(candidates, min(self.budget.negatives, len(candidates)))
            pids = [self.rng.choice(self.data.positives[qid])] + negatives
            queries += [self.data.queries[qid]] * len(pids)
            passages += self.data.passage_texts(pids)
            labels += [1.0] + [0.0] * (len(pids) - 1)
        return queries, passages, labels


def cross_encoder_step(model: CrossEncoder, pairs: CrossEncoderPairs) -> Stage:
    """The engine's step: pointwise BCE on the logits of the next batch of pairs."""
    def fn(step: int) -> torch.Tensor:
        queries, passages, labels = next(pairs)
        logits = model(queries, passages)  # (N,)
        return F.binary_cross_entropy_with_logits(logits, torch.tensor(labels, device=logits.device))

    return Stage(fn)


def train_cross_encoder(model: CrossEncoder, data: RetrievalData, pool: CandidatePool,
                        budget: CrossEncoderBudget, progress: bool = True, hooks: list[Hook] = (),
                        checkpoint: str | Path | None = None, checkpoint_every: int = 0) -> History:
    """Pointwise BCE on (query, labelled positive) = 1 and (query, pool candidate) = 0 pairs.

    The encoder trains at ``budget.lr`` (clipped to norm 1), the head's scalars at ``head_lr``
    (not clipped with it, no weight decay); checkpoint/resume as in ``retrlab.train.run``.
    """
    if budget.steps < 1 or budget.batch_size < 1 or budget.negatives < 1:
        raise ValueError(f"steps, batch_size and negatives must be >= 1, got {budget}")
    pairs = CrossEncoderPairs(data, pool, budget)
    head = {id(p) for p in model.head_parameters()}
    encoder = [p for p in model.parameters() if id(p) not in head]
    learner = Learner([model], budget.lr, budget.steps, clip=encoder, groups=[
        {"params": encoder, "lr": budget.lr, "weight_decay": 0.01},
        {"params": model.head_parameters(), "lr": budget.head_lr, "weight_decay": 0.0}])
    return run({"model": learner}, cross_encoder_step(model, pairs), budget.steps, seed=budget.seed,
               hooks=hooks, hook_model=model, state={"pairs": pairs.rng}, checkpoint=checkpoint,
               checkpoint_every=checkpoint_every, progress=progress, desc="train cross-encoder")


def score_candidates(model: CrossEncoder, data: RetrievalData, qids: list[str],
                     candidates: list[list[str]], progress: bool = True) -> list[np.ndarray]:
    """Cross-encoder probabilities for each query's candidate list (one flat batch of pairs)."""
    if len(qids) != len(candidates):
        raise ValueError(f"{len(qids)} queries but {len(candidates)} candidate lists")
    queries = [data.queries[q] for q, pids in zip(qids, candidates) for _ in pids]
    probs = model.predict_proba(queries, data.passage_texts([p for pids in candidates for p in pids]),
                                progress=progress)
    return np.split(probs, np.cumsum([len(c) for c in candidates])[:-1])


def rerank_run(model: CrossEncoder, data: RetrievalData, run: dict, depth: int = 10,
               progress: bool = False) -> dict:
    """Re-order each query's top-``depth`` of a first-stage ``run`` by cross-encoder logit."""
    qids = list(run)
    candidates = [rank(run[q])[:depth] for q in qids]
    queries = [data.queries[q] for q, pids in zip(qids, candidates) for _ in pids]
    logits = model.predict(queries, data.passage_texts([p for pids in candidates for p in pids]),
                           progress=progress)  # logits, not probabilities: sigmoid saturates into ties
    per_query = np.split(logits, np.cumsum([len(c) for c in candidates])[:-1])
    return {q: {p: float(s) for p, s in zip(pids, x)} for q, pids, x in zip(qids, candidates, per_query)}


def rerank_report(model: CrossEncoder, data: RetrievalData, split: str = "dev", n_queries: int = 40,
                  depth: int = 10, max_length: int = 64) -> dict:
    """Re-rank zero-shot MiniLM's top-``depth`` on ``n_queries`` queries of ``split``; grade with the truth.

    Returns MRR@10 / nDCG@10 before and after re-ranking, and the cross-encoder's accuracy as a
    classifier (p > 0.5 means relevant) on those candidates, with the share of relevant ones.
    """
    retriever = BiEncoder.minilm(passage_max_length=max_length)
    vectors = cached_corpus_embeddings(retriever, "minilm", data, data.search_pids(split))
    first = dense_run(retriever, data, split, k=depth, passage_vectors=vectors, progress=False)
    first = {q: first[q] for q in data.qids(split)[:n_queries]}
    reranked = rerank_run(model, data, first, depth)
    qrels = {q: data.qrels[q] for q in first}
    truth = np.array([p in qrels[q] for q in reranked for p in reranked[q]])
    predicted = np.array([s > 0.0 for q in reranked for s in reranked[q].values()])  # logit > 0 <=> p > 0.5
    measures = ("MRR@10", "nDCG@10")
    return {"queries": len(first), "depth": depth, "first_stage": evaluate(first, qrels, measures),
            "reranked": evaluate(reranked, qrels, measures), "accuracy": float((truth == predicted).mean()),
            "relevant_share": float(truth.mean())}


