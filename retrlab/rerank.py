"""Train, cache and use the cross-encoder that RocketQA (notebook 05) and AR2 (notebook 06) share.

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

``cross_encoder(data, smoke=...)`` builds it once (MiniLM weights, a new head) and
caches it under a key made of the data's fingerprint, the budget and the seed; smoke mode uses a
smaller budget under another key. The cached folder also holds its dev re-ranking report.
"""
from __future__ import annotations

import random
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from retrlab.cache import atomic_write_json, cached_dir, load_json
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


# default: ~90 s of training + ~10 s of evaluation on 2 free CPU cores (measured on wiki-car dev, zero-shot
# MiniLM's top-10: 40 steps at lr 5e-5 re-rank 0.571 -> 0.549, at 1e-4 -> 0.579, 60 steps at 1e-4 -> 0.621);
# smoke: a few seconds
CE_BUDGET = {False: CrossEncoderBudget(steps=60, batch_size=6, negatives=3, max_length=64, lr=1e-4),
             True: CrossEncoderBudget(steps=3, batch_size=4, negatives=1, max_length=64,
                                      eval_queries=10, eval_depth=5)}


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


def cross_encoder_budget(smoke: bool) -> CrossEncoderBudget:
    return CE_BUDGET[bool(smoke)]


def cross_encoder_folder(data: RetrievalData, *, smoke: bool, budget: CrossEncoderBudget | None = None,
                         progress: bool = False, warmup=None) -> Path:
    """The cached folder of the shared cross-encoder (built on first call): model + ``report.json``.

    ``warmup`` (an ``artifacts.Budget``) picks the warm-up retriever whose pool supplies the
    negatives; by default the one of ``artifacts.warmup_budget(smoke)``.
    """
    from retrlab.artifacts import fingerprint, warmup_budget, warmup_pool

    budget = budget or cross_encoder_budget(smoke)

    def build(folder: Path) -> None:
        if warmup is None:
            pool = warmup_pool(data, smoke=smoke)
        else:
            pool = warmup_pool(data, smoke=smoke, budget=warmup)
        print(f"building the cross-encoder (MiniLM + {budget.head} head, {budget.steps} steps × "
              f"{budget.batch_size} "
              f"queries × {1 + budget.negatives} pairs); cached for later calls")
        started = time.perf_counter()
        model = CrossEncoder.minilm(max_length=budget.max_length, head=budget.head)
        history = train_cross_encoder(model, data, pool, budget, progress)
        split = "dev" if "dev" in data.splits else "test"  # a dataset without a dev split reports on test
        report = rerank_report(model, data, split, budget.eval_queries, budget.eval_depth)
        report.update(budget=asdict(budget), train_seconds=history.last("seconds"),
                      build_seconds=time.perf_counter() - started, final_loss=history.last("loss"))
        model.save_pretrained(folder)
        atomic_write_json(folder / "report.json", report)

    key = f"{fingerprint(data)}-{(warmup or warmup_budget(smoke)).key()}-{budget.key()}"
    return cached_dir(f"models/cross-encoder-{key}", build)


def cross_encoder(data: RetrievalData, *, smoke: bool, budget: CrossEncoderBudget | None = None,
                  progress: bool = False, warmup=None) -> CrossEncoder:
    """The shared cross-encoder: MiniLM + a new head trained on warm-up-pool negatives (cached)."""
    folder = cross_encoder_folder(data, smoke=smoke, budget=budget, progress=progress, warmup=warmup)
    return CrossEncoder.from_pretrained(folder)


def cross_encoder_report(data: RetrievalData, *, smoke: bool,
                         budget: CrossEncoderBudget | None = None, warmup=None) -> dict:
    """The dev re-ranking report written when the cached cross-encoder was built."""
    return load_json(cross_encoder_folder(data, smoke=smoke, budget=budget, warmup=warmup) / "report.json")
