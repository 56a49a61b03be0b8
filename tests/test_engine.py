"""The one training engine: resume and the NaN guard hold for every method family; checkpoints run no code.

Each family (the bi-encoder's contrastive loop, AR2's two-player game, the cross-encoder, a
pretraining objective) is run three ways: uninterrupted; killed by a hook after step 3 with a
checkpoint every 2 steps; resumed from that checkpoint. The resumed run must end with exactly the
losses and weights of the uninterrupted one.
"""
from __future__ import annotations

import functools
import math
import json
import random
from pathlib import Path

import numpy as np
import pytest
import torch

from retrlab.encoders import BiEncoder
from retrlab.methods.ar2 import AR2Config, train_ar2
from retrlab.pretraining.bench import PretrainConfig, TinyConfig, corpus_texts, new_mlm, pretrain, train_wordpiece
from retrlab.rerank import CrossEncoderBudget, train_cross_encoder
from retrlab.train import (CheckpointError, Hook, Learner, Stage, TrainConfig, fused_adamw_runs_on, run, train,
                           warmup_steps)
from tests.helpers import make_tiny_cross_encoder, toy_pool

pytestmark = pytest.mark.usefixtures("one_thread")

TINY_BERT = TinyConfig(vocab_size=200, layers=1, hidden=16, heads=2, query_max_length=16, passage_max_length=24)


class Crash(Exception):
    """Raised by a hook to stop a run the way a kill would (after the step, before its checkpoint)."""


def crash_after(step: int) -> Hook:
    def fn(at: int, model) -> None:
        raise Crash(at)
    return Hook(step, fn)


def fill_nan(module: torch.nn.Module) -> None:
    with torch.no_grad():
        for p in module.parameters():
            p.fill_(float("nan"))


# --- one run of each family: (hooks, checkpoint) -> (losses, a weight vector) -----------------------
def contrastive(toy_data, hooks, checkpoint, poison=False):
    model = BiEncoder.tiny(layers=1, hidden=32, heads=2, seed=0, passage_max_length=32)
    if poison:
        fill_nan(model.query_model)
    def hard(qid, rng):
        return [rng.choice([p for p in toy_data.search_pids("train") if p not in toy_data.qrels[qid]])]
    history = train(model, toy_data, TrainConfig(steps=6, batch_size=2, lr=1e-3, tau=1.0), sampler=hard,
                    hooks=hooks, progress=False, checkpoint=checkpoint, checkpoint_every=2)
    return history.series("loss")[1], model.encode_queries(["cats"])


def ar2(toy_data, hooks, checkpoint, poison=False):
    retriever = BiEncoder.tiny(layers=1, hidden=32, seed=0)
    ranker = make_tiny_cross_encoder(0, hidden=16)
    if poison:
        fill_nan(ranker)
    config = AR2Config(iterations=3, ranker_steps=1, retriever_steps=1, batch_size=2, negatives=2, depth=4)
    # 6 steps: the crash after step 3 lands inside iteration 2, whose refreshed pool must be restored
    history = train_ar2(retriever, ranker, toy_data, toy_data.qids("train"), toy_data.search_pids("train"),
                        config, progress=False, hooks=hooks, checkpoint=checkpoint, checkpoint_every=2)
    losses = [r.get("retriever_loss", r.get("ranker_loss")) for r in history.rows]
    return losses, np.concatenate([retriever.encode_queries(["cats"]).ravel(),
                                   ranker.predict(["cats"], ["Cats eat meat."])])


def cross_encoder(toy_data, hooks, checkpoint, poison=False):
    model = make_tiny_cross_encoder(0, hidden=32, head="segment-cosine")
    if poison:
        fill_nan(model)
    budget = CrossEncoderBudget(steps=6, batch_size=2, negatives=2, max_length=48, depth=8, lr=1e-3)
    history = train_cross_encoder(model, toy_data, toy_pool(toy_data), budget, progress=False, hooks=hooks,
                                  checkpoint=checkpoint, checkpoint_every=2)
    return history.series("loss")[1], model.predict(["cats"], ["Cats eat meat."])


@functools.lru_cache(maxsize=1)
def toy_tokenizer(texts: tuple[str, ...]):
    """One tokenizer for every run (WordPiece training breaks ties differently from run to run)."""
    return train_wordpiece(list(texts), 200)


def pretraining(toy_data, hooks, checkpoint, poison=False):
    texts = corpus_texts(toy_data)
    tok = toy_tokenizer(tuple(texts))
    mlm = new_mlm(tok, TINY_BERT)
    if poison:
        fill_nan(mlm)

    def task(rng: random.Random, batch_size: int):
        chosen = rng.sample(texts, batch_size)
        return [t.split(": ")[0] for t in chosen], chosen

    config = PretrainConfig(steps=6, batch_size=3, lr=3e-3, mlm_weight=0.5)  # MLM masks draw on torch's RNG
    history = pretrain(mlm, tok, texts, config, task=task, tiny=TINY_BERT, progress=False, hooks=hooks,
                       checkpoint=checkpoint, checkpoint_every=2)
    return history.series("loss")[1], mlm.bert.embeddings.word_embeddings.weight[:3].detach().numpy()


FAMILIES = {"contrastive": contrastive, "ar2": ar2, "cross-encoder": cross_encoder, "pretraining": pretraining}


@pytest.mark.parametrize("family", FAMILIES)
def test_an_interrupted_run_resumes_exactly(family, toy_data, tmp_path):
    method = FAMILIES[family]
    reference_losses, reference_weights = method(toy_data, [], None)
    checkpoint = tmp_path / "ckpt.pt"
    with pytest.raises(Crash):
        method(toy_data, [crash_after(3)], checkpoint)  # step 3 trained, step 2 saved
    assert json.loads(Path(f"{checkpoint}.json").read_text())["step"] == 2
    resumed_losses, resumed_weights = method(toy_data, [], checkpoint)
    assert resumed_losses == reference_losses and len(resumed_losses) == 6
    np.testing.assert_array_equal(resumed_weights, reference_weights)


@pytest.mark.parametrize("family", FAMILIES)
def test_a_nan_loss_stops_every_family_at_its_first_step(family, toy_data):
    with pytest.raises(FloatingPointError, match="the training loss is nan at step 1"):
        FAMILIES[family](toy_data, [], None, poison=True)


class Payload:
    """What an attacker pickles: unpickling it would create a file."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return Path.touch, (self.marker,)


def test_a_checkpoint_with_a_pickled_payload_is_refused_unexecuted(toy_data, tmp_path):
    marker = tmp_path / "pwned"
    checkpoint = tmp_path / "ckpt.pt"
    torch.save({"step": torch.tensor(2), "torch_rng": torch.get_rng_state(), "evil": Payload(marker)}, checkpoint)
    Path(f"{checkpoint}.json").write_text(json.dumps({"step": 2, "history": [], "states": {}}))
    with pytest.raises(CheckpointError, match="holds more than tensors"):
        contrastive(toy_data, [], checkpoint)
    assert not marker.exists()


def test_checkpoint_files_of_two_saves_are_refused(toy_data, tmp_path):
    checkpoint = tmp_path / "ckpt.pt"
    with pytest.raises(Crash):
        contrastive(toy_data, [crash_after(5)], checkpoint)  # saved at step 4
    meta = json.loads(Path(f"{checkpoint}.json").read_text())
    Path(f"{checkpoint}.json").write_text(json.dumps({**meta, "step": 2}))
    with pytest.raises(CheckpointError, match=r"\(step 4\) and .* \(step 2\) come from two saves"):
        contrastive(toy_data, [], checkpoint)
    Path(f"{checkpoint}.json").unlink()
    with pytest.raises(CheckpointError, match="cannot be read"):
        contrastive(toy_data, [], checkpoint)


def test_warmup_rounding_is_one_rule():
    assert [warmup_steps(0.1, n) for n in (1, 3, 10, 15, 30, 60, 120, 150)] == [1, 1, 1, 2, 3, 6, 12, 15]
    assert warmup_steps(0.0, 100) == 0


def test_run_alternates_learners_on_a_schedule():
    """Two learners, each with its own optimiser: a step only moves the parameters of its learner."""
    a, b = torch.nn.Linear(2, 1), torch.nn.Linear(2, 1)
    before = [p.detach().clone() for p in (*a.parameters(), *b.parameters())]
    moved = []

    def stage(step: int) -> Stage:
        net, name = (a, "a") if step % 2 else (b, "b")
        return Stage(lambda s: net(torch.ones(1, 2)).pow(2).sum(), learner=name, loss_name=f"{name}_loss")

    def record(step, model):
        moved.append([not torch.equal(p, q) for p, q in zip((*a.parameters(), *b.parameters()), before)])

    learners = {"a": Learner([a], 0.1, 2, warmup_ratio=0.0), "b": Learner([b], 0.1, 2, warmup_ratio=0.0)}
    history = run(learners, stage, 4, seed=0, hooks=[Hook(1, record)], progress=False)
    assert moved[0] == [True, True, False, False] and moved[1] == [True, True, True, True]
    assert [sorted(k for k in r if k.endswith("loss")) for r in history.rows] == [["a_loss"], ["b_loss"]] * 2


@pytest.mark.parametrize("clip, stepped_norm", [(1.0, 1.0), (0.5, 0.5), (math.inf, 5.0)])
def test_the_norm_before_clipping_is_logged_and_inf_switches_clipping_off(clip, stepped_norm):
    """A hand-made loss 3·w0 + 4·w1 has the gradient (3, 4), of norm 5: the history logs 5 whatever the
    clip, and the optimiser steps with the gradient clipped to ``clip`` (math.inf: left as it is)."""
    module = torch.nn.Linear(2, 1, bias=False)
    seen = []
    learner = Learner([module], 0.1, 1, weight_decay=0.0, warmup_ratio=0.0, max_grad_norm=clip)
    stage = Stage(lambda s: (module.weight * torch.tensor([3.0, 4.0])).sum())
    history = run({"model": learner}, stage, 1, seed=0, progress=False,
                  hooks=[Hook(1, lambda step, m: seen.append(module.weight.grad.norm().item()))])
    assert history.rows[0]["grad_norm"] == pytest.approx(5.0)
    assert seen == [pytest.approx(stepped_norm)]


def test_a_run_inside_an_autocast_region_sees_each_optimiser_step():
    """autocast caches the bf16 copy of a weight until its region exits: without the engine clearing it
    after each step, every forward pass would use the first step's weights (docs/RESULTS.md 1.8)."""
    layer, outputs = torch.nn.Linear(4, 1, bias=False), []

    def loss(step: int) -> torch.Tensor:
        out = layer(torch.ones(1, 4))
        outputs.append(out.item())
        return out.float().sum()

    with torch.no_grad():
        layer.weight.fill_(0.25)
    learner = Learner([layer], 0.5, 3, weight_decay=0.0, warmup_ratio=0.0, max_grad_norm=math.inf)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        run({"model": learner}, Stage(loss), 3, seed=0, progress=False)
    # AdamW's first step moves each weight by the learning rate, against the gradient: 0.25 -> -0.25
    assert outputs[:2] == [1.0, -1.0] and outputs[2] < -1.0  # with stale weights: [1.0, 1.0, 1.0]


def test_a_train_config_refuses_a_clip_that_is_not_positive():
    with pytest.raises(ValueError, match=r"max_grad_norm must be > 0 \(math.inf: no clipping\), got 0"):
        TrainConfig(max_grad_norm=0)
    with pytest.raises(ValueError, match="max_grad_norm must be > 0"):
        TrainConfig(max_grad_norm=math.nan)
    assert TrainConfig(max_grad_norm=math.inf).max_grad_norm == math.inf


def test_the_engine_steps_with_fused_adamw_and_matches_the_per_tensor_loop():
    """Learner.build takes torch's fused AdamW kernel on the CPU (same update, one pass per tensor): after
    five steps on a hand-made gradient its weights equal the per-tensor loop's up to rounding."""
    torch.manual_seed(0)
    fused, loop = torch.nn.Linear(8, 4), torch.nn.Linear(8, 4)
    loop.load_state_dict(fused.state_dict())
    start = fused.weight.detach().clone()
    optimizer, _ = Learner([fused], 1e-2, 5, warmup_ratio=0.0).build()
    reference = torch.optim.AdamW(loop.parameters(), lr=1e-2, weight_decay=0.01, foreach=False)
    assert optimizer.defaults["fused"] is True and not reference.defaults["fused"]
    x = torch.randn(16, 8)
    for _ in range(5):
        for model, opt in ((fused, optimizer), (loop, reference)):
            opt.zero_grad()
            (model(x) ** 2).mean().backward()
            opt.step()
    assert (fused.weight - start).abs().min() > 1e-3  # every weight moved: the comparison is not vacuous
    for a, b in zip(fused.parameters(), loop.parameters()):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-6)


def test_fused_adamw_is_used_only_where_its_kernel_runs():
    cpu = torch.nn.Parameter(torch.zeros(2))
    meta = torch.nn.Parameter(torch.zeros(2, device="meta"))
    assert fused_adamw_runs_on([cpu]) and not fused_adamw_runs_on([cpu, meta]) and not fused_adamw_runs_on([])
