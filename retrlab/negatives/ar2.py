"""AR2: a retriever and a ranker trained against each other (Zhang et al., ICLR 2022).

Official code: ``microsoft/AR2``, ``AR2/wiki/co_training_wiki_train.py`` (the alternating
loop and both losses), ``AR2/utils/util.py: TraditionDataset`` (groups of one positive and
``number_neg`` negatives shuffled out of the retriever's top-100), ``co_training_wiki_generate.py``
(the refresh: re-encode the corpus with the current retriever, retrieve again).

The game ``min_θ max_φ E_{D⁻ ~ G_θ(q)} log p_φ(d⁺ | q, {d⁺} ∪ D⁻)``, played on groups
``[d⁺, d⁻_1 .. d⁻_n]`` drawn from the retriever's refreshed top-k:

* **ranker** (cross-encoder ``D_φ``) steps: listwise cross-entropy, the positive is column 0;
* **retriever** (bi-encoder ``G_θ``) steps, ranker frozen: ``λ·L_adv + (1−λ)·L_kd`` with
  ``L_kd = −Σ_i p_φ(i) log p_θ(i)`` and ``L_adv = Σ_i log σ(r⁺ − r_i) · log p_θ(i)``
  (``retrlab.losses.kl_distillation_loss`` and ``ar2_adversarial_loss``).

Each iteration: refresh the candidates with the current retriever, a few ranker steps, then
retriever steps (the official ratio is 500 : 1500 per 2000-step iteration). Deviations for a
CPU: the refresh re-ranks a fixed *candidate universe* (the warm-up pool's top candidates of the
training queries, plus their positives) instead of the whole corpus; the retriever's cosine scores
are divided by a temperature τ (MiniLM's vectors are normalised; AR2 uses raw dot products).
With ``ranker=None`` the same loop trains the retriever alone with listwise CE on the same groups
and refreshes: the baseline "without the ranker, on the same budget".
"""
from __future__ import annotations

import dataclasses
import random
import time
from dataclasses import dataclass

import numpy as np
import torch
from tqdm.auto import tqdm

from retrlab.data.dataset import RetrievalData
from retrlab.encoders import BiEncoder, CrossEncoder
from retrlab.losses import ar2_adversarial_loss, kl_distillation_loss, listwise_loss
from retrlab.pool import CandidatePool, dense_pool
from retrlab.train import History
from retrlab.utils import seed_everything


def ar2_retriever_loss(retriever_scores: torch.Tensor, ranker_scores: torch.Tensor, lam: float = 0.5,
                       teacher_tau: float = 1.0) -> torch.Tensor:
    """AR2's retriever loss ``λ·L_adv + (1−λ)·L_kd`` on (B, 1+n) group scores, positive in column 0."""
    if not 0.0 <= lam <= 1.0:
        raise ValueError(f"lambda must be in [0, 1], got {lam}")
    return (lam * ar2_adversarial_loss(retriever_scores, ranker_scores)
            + (1 - lam) * kl_distillation_loss(retriever_scores, ranker_scores, teacher_tau))


@dataclass(frozen=True)
class AR2Config:
    iterations: int = 2
    ranker_steps: int = 4  # per iteration, first
    retriever_steps: int = 12  # per iteration, after the ranker steps
    batch_size: int = 8  # queries per step
    negatives: int = 3  # per group: 1 positive + ``negatives`` from the refreshed top-``depth``
    depth: int = 10
    lam: float = 0.5  # the README's --adv_lambda
    teacher_tau: float = 1.0  # --temperature_normal
    tau: float = 0.05  # retriever scores = cosine / tau
    retriever_lr: float = 2e-5
    ranker_lr: float = 1e-5
    seed: int = 0


def candidate_universe(pool: CandidatePool, data: RetrievalData, qids: list[str], depth: int) -> list[str]:
    """The passages a refresh re-encodes: each query's labelled positives and top-``depth`` candidates."""
    seen: dict[str, None] = {}
    for qid in qids:
        for pid in list(data.positives[qid]) + pool.candidates(qid)[0][:depth]:
            seen.setdefault(pid, None)
    return list(seen)


def refresh_pool(retriever: BiEncoder, data: RetrievalData, qids: list[str], universe: list[str],
                 depth: int) -> CandidatePool:
    """The current retriever's top-``depth`` over ``universe`` for ``qids`` (labelled positives removed)."""
    narrowed = dataclasses.replace(data, splits={"ar2": list(qids)}, split_pids={"ar2": list(universe)})
    return dense_pool(retriever, narrowed, "ar2", depth=depth, source="refreshed")


def sample_groups(pool: CandidatePool, data: RetrievalData, qids: list[str], negatives: int, depth: int,
                  rng: random.Random) -> list[list[str]]:
    """Per query ``[positive, n negatives]``: negatives drawn uniformly from the top-``depth`` candidates."""
    groups = []
    for qid in qids:
        candidates = pool.candidates(qid)[0][:depth]
        if len(candidates) < negatives:
            raise ValueError(f"query {qid!r} has {len(candidates)} candidates, "
                             f"fewer than {negatives} negatives")
        groups.append([rng.choice(data.positives[qid])] + rng.sample(candidates, negatives))
    return groups


def retriever_group_scores(retriever: BiEncoder, data: RetrievalData, qids: list[str],
                           groups: list[list[str]], tau: float) -> torch.Tensor:
    """(B, 1+n) differentiable retriever scores ``cos(q, d) / tau`` of each query's group."""
    q = retriever.embed_queries(data.query_texts(qids))  # (B, H)
    p = retriever.embed_passages(data.passage_texts([pid for g in groups for pid in g]))  # (B·(1+n), H)
    p = p.view(len(qids), len(groups[0]), -1)  # (B, 1+n, H)
    return torch.einsum("bh,bnh->bn", q, p) / tau


def ranker_group_scores(ranker: CrossEncoder, data: RetrievalData, qids: list[str],
                        groups: list[list[str]]) -> torch.Tensor:
    """(B, 1+n) ranker logits of each query's group (differentiable; wrap in no_grad to freeze)."""
    queries = [data.queries[q] for q, g in zip(qids, groups) for _ in g]
    return ranker(queries, data.passage_texts([pid for g in groups for pid in g])).view(len(qids), -1)


def _step(model: torch.nn.Module, optimizer, loss: torch.Tensor) -> None:
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    optimizer.step()


def train_ar2(retriever: BiEncoder, ranker: CrossEncoder | None, data: RetrievalData, qids: list[str],
              universe: list[str], config: AR2Config, on_iteration=None, progress: bool = True,
              picks: list | None = None) -> History:
    """Alternate ranker and retriever steps for ``config.iterations`` refreshes (in place).

    ``on_iteration(iteration, retriever, ranker)`` runs after each iteration (and before the first,
    with iteration 0); its dict is logged. ``ranker=None`` trains the retriever alone with
    listwise CE on the same groups: the baseline. ``picks``, when given, receives
    ``(qid, negatives)`` of every group a retriever step trains on (to measure false negatives).
    """
    seed_everything(config.seed)
    rng = random.Random(config.seed)
    if len(qids) < config.batch_size:
        raise ValueError(f"batch_size {config.batch_size} exceeds the {len(qids)} training queries")
    retriever_opt = torch.optim.AdamW(retriever.parameters(), lr=config.retriever_lr, weight_decay=0.01)
    ranker_opt = torch.optim.AdamW(ranker.parameters(), lr=config.ranker_lr) if ranker is not None else None
    history, started, step = History(), time.perf_counter(), 0
    if on_iteration:
        history.log(0, **(on_iteration(0, retriever, ranker) or {}))
    total = config.iterations * (config.retriever_steps + (config.ranker_steps if ranker is not None else 0))
    bar = tqdm(total=total, desc="AR2" if ranker is not None else "retriever alone", disable=not progress)
    for iteration in range(1, config.iterations + 1):
        pool = refresh_pool(retriever, data, qids, universe, config.depth)  # G_θ's current top-k
        phases = [("ranker", config.ranker_steps)] if ranker is not None else []
        for phase, steps in phases + [("retriever", config.retriever_steps)]:
            for _ in range(steps):
                step += 1
                batch = rng.sample(qids, config.batch_size)
                groups = sample_groups(pool, data, batch, config.negatives, config.depth, rng)
                targets = torch.zeros(len(batch), dtype=torch.long, device=retriever.device)  # positive = column 0
                if phase == "ranker":  # max_φ: pick the positive out of the retriever's candidates
                    ranker.train()
                    loss = listwise_loss(ranker_group_scores(ranker, data, batch, groups), targets)
                    _step(ranker, ranker_opt, loss)
                    history.log(step, ranker_loss=loss.item(), iteration=iteration)
                else:  # min_θ: retriever steps, ranker frozen
                    if picks is not None:
                        picks.extend((q, g[1:]) for q, g in zip(batch, groups))
                    retriever.train()
                    scores = retriever_group_scores(retriever, data, batch, groups, config.tau)
                    if ranker is None:
                        loss = listwise_loss(scores, targets)
                    else:
                        ranker.eval()
                        with torch.no_grad():
                            teacher = ranker_group_scores(ranker, data, batch, groups)
                        loss = ar2_retriever_loss(scores, teacher, config.lam, config.teacher_tau)
                    _step(retriever, retriever_opt, loss)
                    history.log(step, retriever_loss=loss.item(), iteration=iteration)
                history.log(step, seconds=time.perf_counter() - started)
                bar.update(1)
        if on_iteration:
            history.log(step, **(on_iteration(iteration, retriever, ranker) or {}))
    bar.close()
    retriever.eval()
    if ranker is not None:
        ranker.eval()
    return history


def probe_scores(retriever: BiEncoder, ranker: CrossEncoder, data: RetrievalData, qids: list[str],
                 groups: list[list[str]], tau: float = 0.05) -> dict[str, np.ndarray]:
    """Both players' softmax distributions over the same fixed groups: (Q, 1+n) arrays, no gradient."""
    with torch.no_grad():
        s = retriever_group_scores(retriever, data, qids, groups, tau)
        r = ranker_group_scores(ranker, data, qids, groups)
    return {"retriever": torch.softmax(s, -1).cpu().numpy(), "ranker": torch.softmax(r, -1).cpu().numpy()}
