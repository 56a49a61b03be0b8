"""Cross-batch negatives: the real all-gather (2 gloo processes) against the one-process loss."""
from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from retrlab.ddp import all_gather_with_grad
from retrlab.losses import simulated_cross_batch_loss
from retrlab.methods.rocketqa import cross_batch_loss, cross_batch_step
from retrlab.encoders import BiEncoder
from retrlab.train import Batch, contrastive_loss

WORLD, B, P, H, TAU = 2, 2, 4, 3, 0.5  # per worker: 2 queries, [2 positives ; 2 negatives]


def global_batch() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return torch.randn(WORLD * B, H, generator=g), torch.randn(WORLD * P, H, generator=g)


WORKER = """
import sys
import torch
import torch.distributed as dist
from retrlab.ddp import all_gather_with_grad
from retrlab.methods.rocketqa import cross_batch_loss

rank, port, out = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
WORLD, B, P, H, TAU = {WORLD}, {B}, {P}, {H}, {TAU}
dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{{port}}", rank=rank, world_size=WORLD)
g = torch.Generator().manual_seed(0)  # the same global batch as global_batch() in the test
queries, passages = torch.randn(WORLD * B, H, generator=g), torch.randn(WORLD * P, H, generator=g)
q = queries[rank * B:(rank + 1) * B].clone().requires_grad_()
p = passages[rank * P:(rank + 1) * P].clone().requires_grad_()
gathered = all_gather_with_grad(p)
loss = cross_batch_loss(q, p, TAU)
loss.backward()
torch.save({{"gathered": gathered.detach(), "loss": loss.detach(), "q_grad": q.grad, "p_grad": p.grad}},
           f"{{out}}/rank{{rank}}.pt")
dist.destroy_process_group()
""".format(WORLD=WORLD, B=B, P=P, H=H, TAU=TAU)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def reference() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The single-process loss on the same global batch and its gradients."""
    queries, passages = global_batch()
    queries.requires_grad_(), passages.requires_grad_()
    loss = simulated_cross_batch_loss(list(queries.split(B)), list(passages.split(P)), TAU)
    loss.backward()
    return loss.detach(), queries.grad, passages.grad


def test_simulated_loss_is_the_listwise_loss_over_the_global_batch():
    queries, passages = global_batch()
    # worker w's query i has its positive at column w*P + i of the gathered passages
    expected = F.cross_entropy(queries @ passages.T / TAU, torch.tensor([0, 1, 4, 5]))
    loss = simulated_cross_batch_loss(list(queries.split(B)), list(passages.split(P)), TAU)
    assert torch.allclose(loss, expected, atol=1e-6)


def test_single_process_cross_batch_loss_is_plain_listwise():
    queries, passages = global_batch()
    q, p = queries[:B], passages[:P]
    assert torch.equal(all_gather_with_grad(p), p)
    expected = F.cross_entropy(q @ p.T / TAU, torch.arange(B))
    assert torch.allclose(cross_batch_loss(q, p, TAU), expected, atol=1e-6)


def test_bad_shapes_are_rejected():
    queries, passages = global_batch()
    with pytest.raises(ValueError, match="positive per query"):
        cross_batch_loss(queries, passages[:2])
    with pytest.raises(ValueError, match="same number of passages"):
        simulated_cross_batch_loss([queries[:2], queries[2:]], [passages[:4], passages[4:7]])


def test_all_gather_with_two_gloo_processes_matches_one_process(tmp_path):
    # two real processes (lean: they import torch and retrlab.ddp only) on 127.0.0.1
    script, port = tmp_path / "worker.py", _free_port()
    script.write_text(WORKER)
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    procs = [subprocess.Popen([sys.executable, str(script), str(r), str(port), str(tmp_path)], env=env,
                              stderr=subprocess.PIPE, text=True) for r in range(WORLD)]
    for proc in procs:
        _, err = proc.communicate(timeout=240)
        assert proc.returncode == 0, err
    ranks = [torch.load(tmp_path / f"rank{r}.pt") for r in range(WORLD)]
    queries, passages = global_batch()
    ref_loss, ref_q_grad, ref_p_grad = reference()
    for r, got in enumerate(ranks):
        assert got["gathered"].shape == (WORLD * P, H)
        assert torch.equal(got["gathered"], passages)  # every worker sees every worker's passages
        # DDP averages gradients over workers: each worker's gradient / G is the global-batch gradient
        assert torch.allclose(got["q_grad"] / WORLD, ref_q_grad[r * B:(r + 1) * B], atol=1e-6)
        assert torch.allclose(got["p_grad"] / WORLD, ref_p_grad[r * P:(r + 1) * P], atol=1e-6)
    assert torch.allclose(torch.stack([g["loss"] for g in ranks]).mean(), ref_loss, atol=1e-6)
    # the negatives-only rows of a worker get gradient from the other worker's queries too
    assert ranks[0]["p_grad"][B:].abs().sum() > 0


def test_cross_batch_step_equals_the_in_batch_loss(toy_data):
    model = BiEncoder.tiny(seed=0)
    model.eval()  # no dropout: both losses see identical embeddings
    qids = toy_data.qids("train")  # 4 queries -> 2 shards of 2
    batch = Batch(qids, toy_data.query_texts(qids), [toy_data.positives[q][0] for q in qids],
                  [["r4"], ["c5"], ["c1"], ["r1"]])
    with torch.no_grad():
        sharded = cross_batch_step(2)(model, toy_data, batch, 0.05)
        plain = contrastive_loss(model, toy_data, batch, 0.05)
    assert torch.allclose(sharded, plain, atol=1e-5)
    with pytest.raises(ValueError, match="divisible"):
        cross_batch_step(3)(model, toy_data, batch, 0.05)
