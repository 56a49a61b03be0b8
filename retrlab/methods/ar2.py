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
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from retrlab.data.dataset import RetrievalData
from retrlab.encoders import BiEncoder, CrossEncoder
from retrlab.losses import ar2_retriever_loss, listwise_loss
from retrlab.pool import CandidatePool, dense_pool
from retrlab.train import History, Hook, Learner, Stage, run
from retrlab.utils import seed_everything


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
    warmup_ratio: float = 0.1  # each player's linear warm-up, then linear decay (retrlab.train.run)
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


def pool_state(pool: CandidatePool | None) -> dict | None:
    """A pool as plain fields (lists and arrays), for a checkpoint."""
    return None if pool is None else {f.name: getattr(pool, f.name) for f in dataclasses.fields(pool)}


class AR2Game:
    """The two players' step functions over one shared state: the refreshed pool and the sampler's rng.

    Step ``s`` belongs to iteration ``(s - 1) // per_iteration + 1``; its first step refreshes the
    pool with the current retriever, the next ``ranker_steps`` train the ranker, the rest the
    retriever. ``state_dict`` holds the current pool, so a resumed run trains on the same groups.
    ``first_pool``, when given, is iteration 1's refresh, computed once by the caller.
    """

    def __init__(self, retriever: BiEncoder, ranker: CrossEncoder | None, data: RetrievalData, qids: list[str],
                 universe: list[str], config: AR2Config, picks: list | None = None,
                 first_pool: CandidatePool | None = None) -> None:
        if len(qids) < config.batch_size:
            raise ValueError(f"batch_size {config.batch_size} exceeds the {len(qids)} training queries")
        if first_pool is not None and first_pool.qids != list(qids):
            raise ValueError(f"first_pool ranks {len(first_pool.qids)} queries, not the game's {len(qids)} "
                             "training queries in their order")
        self.retriever, self.ranker, self.data, self.qids, self.universe = retriever, ranker, data, qids, universe
        self.config, self.picks, self.first_pool = config, picks, first_pool
        self.rng = random.Random(config.seed)
        self.pool: CandidatePool | None = None
        self.ranker_steps = config.ranker_steps if ranker is not None else 0
        self.per_iteration = self.ranker_steps + config.retriever_steps

    def stage(self, step: int) -> Stage:
        if (step - 1) % self.per_iteration < self.ranker_steps:
            return Stage(self.ranker_step, learner="ranker", loss_name="ranker_loss")
        return Stage(self.retriever_step, learner="retriever", loss_name="retriever_loss")

    def iteration(self, step: int) -> int:
        return (step - 1) // self.per_iteration + 1

    def groups(self, step: int) -> tuple[list[str], list[list[str]], torch.Tensor]:
        """This step's queries, their ``[positive, negatives]`` groups, and the targets (column 0)."""
        if step == 1 and self.first_pool is not None:  # the starting retriever's top-k, computed once
            self.pool = self.first_pool
        elif (step - 1) % self.per_iteration == 0:  # a new iteration: G_θ's current top-k
            self.pool = refresh_pool(self.retriever, self.data, self.qids, self.universe, self.config.depth)
        batch = self.rng.sample(self.qids, self.config.batch_size)
        groups = sample_groups(self.pool, self.data, batch, self.config.negatives, self.config.depth, self.rng)
        return batch, groups, torch.zeros(len(batch), dtype=torch.long, device=self.retriever.device)

    def ranker_step(self, step: int) -> tuple[torch.Tensor, dict]:
        """max_φ: the ranker picks the positive out of the retriever's candidates (listwise CE)."""
        batch, groups, targets = self.groups(step)
        self.ranker.train()
        loss = listwise_loss(ranker_group_scores(self.ranker, self.data, batch, groups), targets)
        return loss, {"iteration": self.iteration(step)}

    def retriever_step(self, step: int) -> tuple[torch.Tensor, dict]:
        """min_θ: retriever steps against the frozen ranker (listwise CE alone without a ranker)."""
        batch, groups, targets = self.groups(step)
        if self.picks is not None:
            self.picks.extend((q, g[1:]) for q, g in zip(batch, groups))
        self.retriever.train()
        scores = retriever_group_scores(self.retriever, self.data, batch, groups, self.config.tau)
        if self.ranker is None:
            return listwise_loss(scores, targets), {"iteration": self.iteration(step)}
        self.ranker.eval()
        with torch.no_grad():
            teacher = ranker_group_scores(self.ranker, self.data, batch, groups)
        loss = ar2_retriever_loss(scores, teacher, self.config.lam, self.config.teacher_tau)
        return loss, {"iteration": self.iteration(step)}

    def state_dict(self) -> dict:
        return {"pool": pool_state(self.pool)}

    def load_state_dict(self, state: dict) -> None:
        self.pool = None if state["pool"] is None else CandidatePool(**state["pool"])


def train_ar2(retriever: BiEncoder, ranker: CrossEncoder | None, data: RetrievalData, qids: list[str],
              universe: list[str], config: AR2Config, on_iteration=None, progress: bool = True,
              picks: list | None = None, hooks: list[Hook] = (), checkpoint: str | Path | None = None,
              checkpoint_every: int = 0, first_pool: CandidatePool | None = None) -> History:
    """Alternate ranker and retriever steps for ``config.iterations`` refreshes (in place), on the engine.

    ``on_iteration(iteration, retriever, ranker)`` runs after each iteration (and before the first,
    with iteration 0); its dict is logged. ``ranker=None`` trains the retriever alone with
    listwise CE on the same groups: the baseline. ``picks``, when given, receives
    ``(qid, negatives)`` of every group a retriever step trains on (to measure false negatives).
    Each player has its own AdamW and schedule (``retrlab.train.run``: one warm-up rule).
    ``first_pool``: iteration 1's refresh, ``refresh_pool(retriever, data, qids, universe, config.depth)``
    of this very retriever, when the caller has it. Games that start from the same retriever (other
    seeds, the control) share it instead of re-encoding the universe each: same numbers, one refresh.
    """
    game = AR2Game(retriever, ranker, data, qids, universe, config, picks, first_pool)
    steps = config.iterations * game.per_iteration
    learners = {"retriever": Learner([retriever], config.retriever_lr, config.iterations * config.retriever_steps,
                                     warmup_ratio=config.warmup_ratio)}
    if ranker is not None:
        learners["ranker"] = Learner([ranker], config.ranker_lr, config.iterations * config.ranker_steps,
                                     warmup_ratio=config.warmup_ratio)
    history = History()
    if on_iteration and not (checkpoint is not None and Path(checkpoint).exists()):
        seed_everything(config.seed)
        history.log(0, **(on_iteration(0, retriever, ranker) or {}))
    if on_iteration:
        per = game.per_iteration
        hooks = [*hooks, Hook(per, lambda step, _: on_iteration(step // per, retriever, ranker))]
    return run(learners, game.stage, steps, seed=config.seed, hooks=hooks, state={"game": game, "rng": game.rng},
               history=history, checkpoint=checkpoint, checkpoint_every=checkpoint_every, progress=progress,
               desc="AR2" if ranker is not None else "retriever alone")


def probe_scores(retriever: BiEncoder, ranker: CrossEncoder, data: RetrievalData, qids: list[str],
                 groups: list[list[str]], tau: float = 0.05) -> dict[str, np.ndarray]:
    """Both players' softmax distributions over the same fixed groups: (Q, 1+n) arrays, no gradient."""
    with torch.no_grad():
        s = retriever_group_scores(retriever, data, qids, groups, tau)
        r = ranker_group_scores(ranker, data, qids, groups)
    return {"retriever": torch.softmax(s, -1).cpu().numpy(), "ranker": torch.softmax(r, -1).cpu().numpy()}


def sharpness(distributions: np.ndarray) -> dict[str, float]:
    """How decided a player is over its groups: (Q, 1+n) softmax rows, the positive in column 0.

    Returns the mean probability on the positive, the share of groups whose top candidate is the
    positive, the mean entropy (nats) and a uniform guess's entropy ``log(1+n)``. A teacher near that
    ceiling is nearly flat: distilling it flattens the student (docs/RESULTS.md, section 4.1).
    """
    p = np.asarray(distributions, dtype=np.float64)
    if p.ndim != 2 or p.shape[1] < 2:
        raise ValueError(f"need (groups, 1 + candidates) probabilities, got shape {p.shape}")
    entropy = -(p * np.log(np.clip(p, 1e-30, None))).sum(-1)
    return {"p_positive": float(p[:, 0].mean()), "positive_first": float((p.argmax(-1) == 0).mean()),
            "entropy": float(entropy.mean()), "uniform_entropy": float(np.log(p.shape[1]))}
