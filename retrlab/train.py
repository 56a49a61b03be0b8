"""The training engine: one loop for every method, and the bi-encoder's batches on top of it.

``run`` is the loop (minGPT's ``Trainer`` with callbacks; Tevatron's ``forward -> scores -> loss``).
It alone owns what every method shares: seeding, the AdamW optimisers and their one schedule
(linear warm-up over ``warmup_steps`` then linear decay), gradient clipping, the NaN guard,
checkpoint/resume, the progress bar and the ``History`` that notebooks plot (each step's loss and, for
one learner, its learning rate and gradient norm before clipping). A method brings only
a *step function* ``fn(step) -> loss`` (or ``(loss, logged values)``), named in a ``Stage`` with
the ``Learner`` (optimiser) it updates, plus ``Hook``s that run after a step. A method with two
players (AR2's ranker and retriever) passes two learners and a schedule ``step -> Stage``.

``train`` is the bi-encoder case (DPR, Karpukhin et al. 2020, ``dpr/models/biencoder.py:
BiEncoderNllLoss``): each step samples a batch of training queries (seeded), each query's
labelled positive and the negatives a *sampler* ``(qid, rng) -> list[pid]`` picks for it, and
minimises the listwise InfoNCE over in-batch + extra negatives; ``step_fn`` replaces that loss
(STAR's pairwise loss, ADORE's rank-weighted loss, RocketQA's cross-batch loss, ...).

Checkpoints hold tensors (weights, optimiser moments, torch's RNG) in a file loaded with
``torch.load(weights_only=True)``, and everything else (python RNG states, batch order, history,
schedule, step) in a JSON file beside it: loading a checkpoint never runs code.
Same seed, same batches, same numbers; an interrupted run resumed from its checkpoint ends
exactly where the uninterrupted one does.
"""
from __future__ import annotations

import json
import math
import numbers
import pickle
import random
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm
from transformers import get_linear_schedule_with_warmup

from retrlab.cache import atomic_write_json
from retrlab.data.dataset import RetrievalData
from retrlab.encoders import BiEncoder
from retrlab.losses import info_nce_loss
from retrlab.utils import seed_everything

Sampler = Callable[[str, random.Random], list[str]]  # (qid, rng) -> the negatives' pids


@dataclass
class TrainConfig:
    steps: int = 120
    batch_size: int = 16  # queries per step; each brings one positive (and its negatives)
    lr: float = 2e-5
    warmup_ratio: float = 0.1
    weight_decay: float = 0.01
    tau: float = 0.05  # temperature; 0.05 = sentence-transformers' scale 20 for cosine scores
    max_grad_norm: float = 1.0  # math.inf: no clipping (the norm is still logged as grad_norm)
    seed: int = 0

    def __post_init__(self) -> None:
        """Bad settings fail here, naming the field, rather than deep inside the first step."""
        for name in ("steps", "batch_size"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
                raise ValueError(f"TrainConfig.{name} must be an integer >= 1, got {value!r}")
        for name in ("lr", "tau"):
            if not math.isfinite(getattr(self, name)) or getattr(self, name) <= 0:
                raise ValueError(f"TrainConfig.{name} must be a finite number > 0, got {getattr(self, name)!r}")
        if not self.max_grad_norm > 0:  # NaN fails this too; math.inf switches clipping off
            raise ValueError(f"TrainConfig.max_grad_norm must be > 0 (math.inf: no clipping), got {self.max_grad_norm!r}")
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
                 sampler: Sampler = no_negatives, split: str = "train") -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.qids = [q for q in data.qids(split) if data.positives.get(q)]
        if len(self.qids) < batch_size:
            raise ValueError(f"batch_size {batch_size} exceeds the {len(self.qids)} labelled {split} queries")
        self.data, self.batch_size, self.sampler = data, batch_size, sampler
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
                     [self.sampler(q, self.rng) for q in chosen])

    def state_dict(self) -> dict:
        return {"rng": self.rng.getstate(), "order": list(self.order), "position": self.position}

    def load_state_dict(self, state: dict) -> None:
        set_random_state(self.rng, state["rng"])
        self.order, self.position = list(state["order"]), state["position"]



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


# --- the engine -----------------------------------------------------------------------------------
def warmup_steps(ratio: float, steps: int) -> int:
    """The one warm-up rule: ``ceil(ratio · steps)``, float noise removed (10% of 60 steps is 6, not 7)."""
    return math.ceil(round(ratio * steps, 9))


def fused_adamw_runs_on(parameters: Sequence[torch.nn.Parameter]) -> bool:
    """True when torch's fused AdamW kernel can update ``parameters`` (all floating point, on the CPU or
    on CUDA). It is the same AdamW in one pass over each tensor: on MiniLM's 22M parameters a CPU step
    takes 14 ms instead of 61 (2 threads; 26 vs 108 with one), about a tenth of a batch-16 training
    step, and its weights differ from the per-tensor loop's by rounding only (≤ 2e-8 after six steps)."""
    return bool(parameters) and all(p.device.type in ("cpu", "cuda") and p.is_floating_point() for p in parameters)


@dataclass
class Learner:
    """One AdamW optimiser: what it trains, its schedule (length ``steps``) and its clipping.

    ``groups`` gives explicit parameter groups (e.g. a head at its own learning rate); by default
    every trainable parameter of ``modules`` is one group. ``clip`` names the parameters whose
    joint norm is clipped to ``max_grad_norm`` (default: all of them).
    """
    modules: list[torch.nn.Module]
    lr: float
    steps: int  # optimiser steps this learner takes in the run: the schedule's length
    weight_decay: float = 0.01
    warmup_ratio: float = 0.1
    max_grad_norm: float = 1.0
    groups: list[dict] | None = None
    clip: list[torch.nn.Parameter] | None = None

    def parameters(self) -> list[torch.nn.Parameter]:
        if self.groups is not None:
            return [p for g in self.groups for p in g["params"]]
        return [p for m in self.modules for p in m.parameters() if p.requires_grad]

    def build(self) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LambdaLR]:
        optimizer = torch.optim.AdamW(self.groups if self.groups is not None else self.parameters(),
                                      lr=self.lr, weight_decay=self.weight_decay,
                                      fused=fused_adamw_runs_on(self.parameters()))
        return optimizer, get_linear_schedule_with_warmup(
            optimizer, warmup_steps(self.warmup_ratio, self.steps), self.steps)


@dataclass
class Stage:
    """A step function and the learner it updates. ``fn(step)`` returns the loss, or ``(loss, dict)``.

    ``backward=False``: ``fn`` back-propagates by itself (a gradient cache does, chunk by chunk) and
    returns its loss detached; the engine only guards, clips and steps. The loss is logged as
    ``loss_name``.
    """
    fn: Callable[[int], torch.Tensor | tuple[torch.Tensor, dict]]
    learner: str = "model"
    backward: bool = True
    loss_name: str = "loss"


NATIVE = (torch.nn.Module, torch.optim.Optimizer)  # saved with their tensors, loaded weights-only


class CheckpointError(ValueError):
    """A checkpoint that cannot be trusted: not tensors only, or its two files disagree."""


def _json_path(path: Path) -> Path:
    return path.with_name(path.name + ".json")


def _split(value: Any, key: str, tensors: dict[str, torch.Tensor]) -> Any:
    """``value`` made JSON-able: tensors and arrays move to ``tensors[key…]``, leaving a reference."""
    if isinstance(value, torch.Tensor):
        tensors[key] = value.detach().cpu()
        return {"__tensor__": key}
    if isinstance(value, np.ndarray):
        tensors[key] = torch.from_numpy(np.ascontiguousarray(value))
        return {"__ndarray__": key}
    if isinstance(value, dict):
        return {str(k): _split(v, f"{key}.{k}", tensors) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_split(v, f"{key}.{i}", tensors) for i, v in enumerate(value)]
    return value


def _join(value: Any, tensors: dict[str, torch.Tensor]) -> Any:
    """The inverse of ``_split`` (tuples come back as lists, as from any JSON)."""
    if isinstance(value, dict):
        if set(value) == {"__tensor__"}:
            return tensors[value["__tensor__"]]
        if set(value) == {"__ndarray__"}:
            return tensors[value["__ndarray__"]].numpy()
        return {k: _join(v, tensors) for k, v in value.items()}
    if isinstance(value, list):
        return [_join(v, tensors) for v in value]
    return value


def _state_of(obj: Any) -> Any:
    return obj.getstate() if isinstance(obj, random.Random) else obj.state_dict()


def set_random_state(rng: random.Random, state: Sequence) -> None:
    """``rng.setstate`` from a state that went through JSON (its tuples became lists)."""
    version, internal, gauss = state
    rng.setstate((version, tuple(internal), gauss))


def _restore(obj: Any, state: Any) -> None:
    if isinstance(obj, random.Random):
        set_random_state(obj, state)
    else:
        obj.load_state_dict(state)


def save_checkpoint(path: Path, step: int, objects: dict[str, Any], history: History) -> None:
    """Tensors of every object to ``path``, the rest (RNG states, batch order, history) to ``path.json``.

    ``objects`` maps names to modules, optimisers, schedulers, samplers with ``state_dict()`` or
    ``random.Random`` generators. Both files are written to temporaries and renamed; the step is
    in both, so a run killed between the two renames is caught at load time.
    """
    tensors: dict[str, Any] = {"torch_rng": torch.get_rng_state(), "step": torch.tensor(step)}
    states = {}
    for name, obj in objects.items():
        if isinstance(obj, NATIVE):  # torch's own state dicts (int keys, tensors) stay whole
            tensors[name] = obj.state_dict()
        else:
            states[name] = _split(_state_of(obj), name, tensors)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    torch.save(tensors, tmp)
    tmp.replace(path)
    atomic_write_json(_json_path(path), {"step": step, "history": history.rows, "states": states})


def load_checkpoint(path: Path, objects: dict[str, Any], history: History) -> int:
    """Restore what ``save_checkpoint`` wrote into ``objects`` and ``history``; returns its step.

    Raises ``CheckpointError`` for a file holding anything but tensors (a pickled object is never
    executed: ``weights_only=True``), a missing or unreadable JSON file, or files of two saves.
    """
    try:
        tensors = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        raise CheckpointError(f"{path} holds more than tensors, so it was not loaded (a retrlab "
                              f"checkpoint never does): {str(error).splitlines()[0]}") from None
    try:
        meta = json.loads(_json_path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise CheckpointError(f"{_json_path(path)}, the non-tensor half of checkpoint {path}, cannot be "
                              f"read ({error}): delete both files to start the run afresh") from None
    if int(tensors.get("step", -1)) != meta.get("step"):
        raise CheckpointError(f"{path} (step {int(tensors.get('step', -1))}) and {_json_path(path)} (step "
                              f"{meta.get('step')}) come from two saves: delete both to start afresh")
    missing = set(objects) - set(meta["states"]) - set(tensors)
    if missing:
        raise CheckpointError(f"{path} has no state for {sorted(missing)}: it was written by another kind of run")
    for name, obj in objects.items():
        _restore(obj, tensors[name] if isinstance(obj, NATIVE) else _join(meta["states"][name], tensors))
    torch.set_rng_state(tensors["torch_rng"])
    history.rows[:] = meta["history"]
    return meta["step"]


def _writes_files() -> bool:
    """False on the ranks > 0 of a torchrun job: every rank holds the same state, one of them saves it."""
    return not (torch.distributed.is_available() and torch.distributed.is_initialized()) or \
        torch.distributed.get_rank() == 0


def run(learners: dict[str, Learner], schedule: Stage | Callable[[int], Stage], steps: int, *, seed: int,
        hooks: Sequence[Hook] = (), hook_model: Any = None, state: dict[str, Any] | None = None,
        history: History | None = None, checkpoint: str | Path | None = None, checkpoint_every: int = 0,
        progress: bool = True, desc: str = "train") -> History:
    """Run ``steps`` steps of ``schedule`` (a ``Stage``, or ``step -> Stage``); returns the history.

    ``state`` names what else a resume must restore (batch iterators, ``random.Random``
    generators, refreshed pools: anything with ``state_dict``/``load_state_dict``). Hooks get
    ``(step, hook_model)`` after each due step; their dicts are logged. With ``checkpoint`` (a
    file) and ``checkpoint_every=N`` the run is saved every N steps; calling ``run`` again with the
    same arguments resumes from the last save.

    Precision is ``retrlab.precision``'s business, forward pass by forward pass. A caller who wraps the
    whole run in ``torch.autocast`` anyway gets what they meant: autocast keeps the bf16 copy of each
    weight it casts until its region exits, so without the cache being cleared after every optimiser
    step, every forward pass of the run would use the first step's weights while AdamW moved the float32
    ones blind (a top-1 run: test MRR@10 0.174 instead of 0.415, docs/RESULTS.md 1.8).
    """
    if checkpoint_every < 0:
        raise ValueError(f"checkpoint_every must be >= 0 (0: never), got {checkpoint_every}")
    seed_everything(seed)
    stage_of = schedule if callable(schedule) and not isinstance(schedule, Stage) else (lambda step: schedule)
    optimisers = {name: learner.build() for name, learner in learners.items()}
    objects = {**{f"{n}.module{i}": m for n, lr in learners.items() for i, m in enumerate(lr.modules)},
               **{f"{n}.optimizer": o for n, (o, _) in optimisers.items()},
               **{f"{n}.scheduler": s for n, (_, s) in optimisers.items()}, **(state or {})}
    history = history if history is not None else History()
    first = 1
    if checkpoint is not None and Path(checkpoint).exists():
        first = load_checkpoint(Path(checkpoint), objects, history) + 1
    modules = [m for learner in learners.values() for m in learner.modules]
    for m in modules:
        m.train()
    started = time.perf_counter()
    bar = tqdm(range(first, steps + 1), desc=desc, disable=not progress, initial=first - 1, total=steps)
    for step in bar:
        stage = stage_of(step)
        learner = learners[stage.learner]
        optimizer, scheduler = optimisers[stage.learner]
        optimizer.zero_grad(set_to_none=True)
        out = stage.fn(step)  # precision (autocast, loss scaling) goes around this call and backward
        loss, logged = out if isinstance(out, tuple) else (out, {})
        if not math.isfinite(loss.item()):  # a NaN would silently ruin every weight at optimizer.step()
            raise FloatingPointError(f"the training loss is {loss.item()} at step {step} ({stage.loss_name}): "
                                     f"check the scores (NaN embeddings?), the temperature and lr={learner.lr}")
        if stage.backward:
            loss.backward()
        norm = torch.nn.utils.clip_grad_norm_(learner.clip if learner.clip is not None else learner.parameters(),
                                              learner.max_grad_norm)  # the norm before clipping
        optimizer.step()
        torch.clear_autocast_cache()  # a caller's autocast region must not keep stale bf16 weights (docstring)
        scheduler.step()
        if len(learners) == 1:
            logged = {"lr": scheduler.get_last_lr()[0], "grad_norm": norm.item(), **logged}
        history.log(step, **{stage.loss_name: loss.item()}, **logged, seconds=time.perf_counter() - started)
        bar.set_postfix({stage.loss_name: f"{loss.item():.3f}"})
        for hook in hooks:
            if hook.due(step, steps):
                history.log(step, **(hook.fn(step, hook_model) or {}))
        if checkpoint is not None and checkpoint_every and step % checkpoint_every == 0 and _writes_files():
            save_checkpoint(Path(checkpoint), step, objects, history)
    for m in modules:
        m.eval()
    return history


# --- the bi-encoder on the engine -------------------------------------------------------------------
def train(model: BiEncoder, data: RetrievalData, config: TrainConfig,
          sampler: Sampler = no_negatives, hooks: Sequence[Hook] = (),
          step_fn: Callable | None = None, batches: Iterator[Batch] | None = None,
          progress: bool = True, history: History | None = None,
          checkpoint: str | Path | None = None, checkpoint_every: int = 0) -> History:
    """Train ``model`` in place for ``config.steps`` steps and return the logged history.

    ``step_fn(model, data, batch, tau) -> loss`` defaults to ``contrastive_loss``. With
    ``checkpoint`` (a file path) and ``checkpoint_every=N``, the run is saved every N steps; calling
    ``train`` again with the same arguments resumes from the last save and ends exactly where an
    uninterrupted run would (same batches, same dropout, same optimiser state).
    """
    step_fn = step_fn or contrastive_loss
    batches = batches or QueryBatches(data, config.batch_size, config.seed, sampler)
    learner = Learner([model], config.lr, config.steps, config.weight_decay, config.warmup_ratio,
                      config.max_grad_norm)
    stage = Stage(lambda step: step_fn(model, data, next(batches), config.tau))
    state = {"batches": batches} if hasattr(batches, "state_dict") else {}
    return run({"model": learner}, stage, config.steps, seed=config.seed, hooks=hooks, hook_model=model,
               state=state, history=history, checkpoint=checkpoint, checkpoint_every=checkpoint_every,
               progress=progress)
