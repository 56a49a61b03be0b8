"""One small, readable training loop for bi-encoders.

Each step: sample a batch of training queries (seeded), take each query's labelled positive and
the negatives a *strategy* picks for it, embed everything, and minimise the listwise InfoNCE
loss over in-batch + extra negatives (DPR, Karpukhin et al. 2020, ``dpr/models/biencoder.py:
BiEncoderNllLoss``). AdamW with linear warm-up then linear decay. Hooks run every N steps
(evaluate on dev, refresh an index, log) and write into a ``History`` that notebooks plot.

A strategy is any function ``(qid, rng) -> list[pid]``: the negatives for that query this step.
``step_fn`` replaces the loss computation when a method needs another one (STAR's pairwise loss,
ADORE's rank-weighted loss, ...). Same seed, same batches, same numbers.
"""
from __future__ import annotations

import math
import numbers
import random
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import torch
from tqdm.auto import tqdm
from transformers import get_linear_schedule_with_warmup

from retrlab.data.dataset import RetrievalData
from retrlab.encoders import BiEncoder
from retrlab.losses import info_nce_loss
from retrlab.utils import seed_everything

NegativeStrategy = Callable[[str, random.Random], list[str]]


@dataclass
class TrainConfig:
    steps: int = 120
    batch_size: int = 16  # queries per step; each brings one positive (and its negatives)
    lr: float = 2e-5
    warmup_ratio: float = 0.1
    weight_decay: float = 0.01
    tau: float = 0.05  # temperature; 0.05 = sentence-transformers' scale 20 for cosine scores
    max_grad_norm: float = 1.0
    seed: int = 0

    def __post_init__(self) -> None:
        """Bad settings fail here, naming the field, rather than deep inside the first step."""
        for name in ("steps", "batch_size"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
                raise ValueError(f"TrainConfig.{name} must be an integer >= 1, got {value!r}")
        for name in ("lr", "tau", "max_grad_norm"):
            if not math.isfinite(getattr(self, name)) or getattr(self, name) <= 0:
                raise ValueError(f"TrainConfig.{name} must be a finite number > 0, got {getattr(self, name)!r}")
        if not 0 <= self.warmup_ratio <= 1:
            raise ValueError(f"TrainConfig.warmup_ratio must be in [0, 1], got {self.warmup_ratio!r}")
        if not math.isfinite(self.weight_decay) or self.weight_decay < 0:
            raise ValueError(f"TrainConfig.weight_decay must be a finite number >= 0, got {self.weight_decay!r}")


@dataclass
class Batch:
    qids: list[str]
    queries: list[str]  # (B,) query texts
    positive_pids: list[str]  # (B,) one labelled positive per query
    negative_pids: list[list[str]]  # (B, n) extra negatives per query (n may be 0)


@dataclass
class History:
    """Logged values per step: ``history.rows`` is a list of dicts, ``series(name)`` gives a curve."""
    rows: list[dict] = field(default_factory=list)

    def log(self, step: int, **values: float) -> None:
        if self.rows and self.rows[-1]["step"] == step:
            self.rows[-1].update(values)
        else:
            self.rows.append({"step": step, **values})

    def series(self, name: str) -> tuple[list[int], list[float]]:
        points = [(r["step"], r[name]) for r in self.rows if name in r]
        return [p[0] for p in points], [p[1] for p in points]

    def last(self, name: str) -> float:
        return self.series(name)[1][-1]


@dataclass
class Hook:
    """Run ``fn(step, model)`` every ``every`` steps (and after the last); its dict is logged."""
    every: int
    fn: Callable[[int, BiEncoder], dict | None]

    def __post_init__(self) -> None:
        if isinstance(self.every, bool) or not isinstance(self.every, numbers.Integral) or self.every < 1:
            raise ValueError(f"Hook.every must be an integer >= 1, got {self.every!r}")

    def due(self, step: int, last_step: int) -> bool:
        return step % self.every == 0 or step == last_step


def no_negatives(qid: str, rng: random.Random) -> list[str]:
    """In-batch negatives only (the DPR baseline without hard negatives)."""
    return []


class QueryBatches:
    """Endless seeded batches: epochs over the shuffled training queries, one positive each.

    Its state (random generator, epoch order, position) can be saved and restored, so that an
    interrupted run resumes with exactly the batches it would have seen.
    """

    def __init__(self, data: RetrievalData, batch_size: int, seed: int,
                 strategy: NegativeStrategy = no_negatives, split: str = "train") -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.qids = [q for q in data.qids(split) if data.positives.get(q)]
        if len(self.qids) < batch_size:
            raise ValueError(f"batch_size {batch_size} exceeds the {len(self.qids)} labelled {split} queries")
        self.data, self.batch_size, self.strategy = data, batch_size, strategy
        self.rng, self.order, self.position = random.Random(seed), [], 0

    def __iter__(self) -> QueryBatches:
        return self

    def __next__(self) -> Batch:
        if self.position + self.batch_size > len(self.order):  # a new epoch, in a new order
            self.order, self.position = self.rng.sample(self.qids, len(self.qids)), 0
        chosen = self.order[self.position:self.position + self.batch_size]
        self.position += self.batch_size
        return Batch(chosen, self.data.query_texts(chosen),
                     [self.rng.choice(self.data.positives[q]) for q in chosen],
                     [self.strategy(q, self.rng) for q in chosen])

    def state_dict(self) -> dict:
        return {"rng": self.rng.getstate(), "order": list(self.order), "position": self.position}

    def load_state_dict(self, state: dict) -> None:
        self.rng.setstate(state["rng"])
        self.order, self.position = list(state["order"]), state["position"]


query_batches = QueryBatches  # the name the notebooks use


def known_positive_mask(data: RetrievalData, batch: Batch, passage_pids: list[str]) -> torch.Tensor:
    """(B, P) True where a passage in the batch is a *labelled* positive of another row's query.

    Such a column would be a false negative we know about (two queries of one section can share a
    positive); it is dropped from that row's softmax. Only labels are used, never the hidden truth.
    """
    labelled = [set(data.positives[q]) for q in batch.qids]
    return torch.tensor([[p in labelled[i] for p in passage_pids] for i in range(len(batch.qids))])


def contrastive_loss(model: BiEncoder, data: RetrievalData, batch: Batch, tau: float) -> torch.Tensor:
    """Listwise InfoNCE: each query against all positives and all extra negatives of the batch."""
    negatives = [p for row in batch.negative_pids for p in row]
    q = model.embed_queries(batch.queries)  # (B, H)
    p = model.embed_passages(data.passage_texts(batch.positive_pids + negatives))  # (B + N, H)
    exclude = known_positive_mask(data, batch, batch.positive_pids + negatives).to(q.device)
    return info_nce_loss(q, p[:len(q)], p[len(q):] if negatives else None, tau, exclude)


def make_optimizer(model: torch.nn.Module, config: TrainConfig):
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)
    warmup = math.ceil(config.warmup_ratio * config.steps)
    return optimizer, get_linear_schedule_with_warmup(optimizer, warmup, config.steps)


def save_checkpoint(path: Path, step: int, model, optimizer, scheduler, batches, history: History) -> None:
    """Everything a run needs to continue exactly: weights, optimiser, schedule, batches, RNG, history."""
    state = {"step": step, "model": model.state_dict(), "optimizer": optimizer.state_dict(),
             "scheduler": scheduler.state_dict(), "batches": batches.state_dict(),
             "torch_rng": torch.get_rng_state(), "history": history.rows}
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    torch.save(state, tmp)
    tmp.replace(path)  # atomic: a run killed while saving keeps its previous checkpoint


def load_checkpoint(path: Path, model, optimizer, scheduler, batches, history: History) -> int:
    """Restore a checkpoint written by ``save_checkpoint``; returns the step it was taken at."""
    state = torch.load(path, map_location=model.device, weights_only=False)  # our own file
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    batches.load_state_dict(state["batches"])
    torch.set_rng_state(state["torch_rng"])
    history.rows[:] = state["history"]
    return state["step"]


def _writes_files() -> bool:
    """False on the ranks > 0 of a torchrun job: every rank holds the same state, one of them saves it."""
    return not (torch.distributed.is_available() and torch.distributed.is_initialized()) or \
        torch.distributed.get_rank() == 0


def train(model: BiEncoder, data: RetrievalData, config: TrainConfig,
          strategy: NegativeStrategy = no_negatives, hooks: list[Hook] = (),
          step_fn: Callable | None = None, batches: Iterator[Batch] | None = None,
          progress: bool = True, history: History | None = None,
          checkpoint: str | Path | None = None, checkpoint_every: int = 0) -> History:
    """Train ``model`` in place for ``config.steps`` steps and return the logged history.

    With ``checkpoint`` (a file path) and ``checkpoint_every=N``, the run is saved every N steps;
    calling ``train`` again with the same arguments resumes from the last save and ends exactly
    where an uninterrupted run would (same batches, same dropout, same optimiser state).
    """
    if checkpoint_every < 0:
        raise ValueError(f"checkpoint_every must be >= 0 (0: never), got {checkpoint_every}")
    seed_everything(config.seed)
    step_fn = step_fn or contrastive_loss
    batches = batches or query_batches(data, config.batch_size, config.seed, strategy)
    optimizer, scheduler = make_optimizer(model, config)
    history = history or History()
    first = 1
    if checkpoint is not None and Path(checkpoint).exists():
        first = load_checkpoint(Path(checkpoint), model, optimizer, scheduler, batches, history) + 1
    started = time.perf_counter()
    model.train()
    bar = tqdm(range(first, config.steps + 1), desc="train", disable=not progress,
               initial=first - 1, total=config.steps)
    for step in bar:
        loss = step_fn(model, data, next(batches), config.tau)
        if not math.isfinite(loss.item()):  # a NaN would silently ruin every weight at optimizer.step()
            raise FloatingPointError(f"the training loss is {loss.item()} at step {step}: check the scores "
                                     f"(NaN embeddings?), the temperature tau={config.tau} and lr={config.lr}")
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), config.max_grad_norm)
        optimizer.step()
        scheduler.step()
        history.log(step, loss=loss.item(), lr=scheduler.get_last_lr()[0],
                    seconds=time.perf_counter() - started)
        bar.set_postfix(loss=f"{loss.item():.3f}")
        for hook in hooks:
            if hook.due(step, config.steps):
                history.log(step, **(hook.fn(step, model) or {}))
        if checkpoint is not None and checkpoint_every and step % checkpoint_every == 0 and _writes_files():
            save_checkpoint(Path(checkpoint), step, model, optimizer, scheduler, batches, history)
    model.eval()
    return history

