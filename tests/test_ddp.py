"""DDP training under torchrun (2 CPU processes, gloo, 127.0.0.1) equals one process on the global batch."""
from __future__ import annotations

import dataclasses
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from ddp_worker import CONFIG, build_model, hard_negative
from retrlab.ddp import gathered_passage_pids, shard, train_distributed
from retrlab.train import Batch, QueryBatches, train

ROOT = Path(__file__).resolve().parents[1]
WORLD = 2


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def ranks(tmp_path_factory) -> list[dict]:
    """Run tests/ddp_worker.py with torchrun on 2 gloo processes; each rank's saved results."""
    out = tmp_path_factory.mktemp("ddp")
    env = {**os.environ, "PYTHONPATH": str(ROOT), "GLOO_SOCKET_IFNAME": "lo", "OMP_NUM_THREADS": "1",
           "RETRLAB_DEVICE": "cpu"}
    command = [sys.executable, "-m", "torch.distributed.run", "--nnodes=1", f"--nproc-per-node={WORLD}",
               "--master-addr=127.0.0.1", f"--master-port={_free_port()}", str(ROOT / "tests" / "ddp_worker.py"),
               str(out)]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return [torch.load(out / f"rank{r}.pt") for r in range(WORLD)]


@pytest.fixture(scope="module")
def reference(toy_data_module):
    """The same two steps in one process, with the plain in-batch loss on the whole global batch."""
    model = build_model()
    history = train(model, toy_data_module, CONFIG, hard_negative(toy_data_module), progress=False)
    return {"losses": history.series("loss")[1], "grads": {n: p.grad for n, p in model.named_parameters()},
            "params": {n: p.detach() for n, p in model.named_parameters()}}


@pytest.fixture(scope="module")
def toy_data_module():
    from tests.helpers import make_toy_data

    return make_toy_data()


def first_batch(data) -> Batch:
    return next(QueryBatches(data, CONFIG.batch_size, CONFIG.seed, hard_negative(data)))


def test_shards_and_gathered_layout(toy_data_module):
    batch = first_batch(toy_data_module)
    parts = [shard(batch, g, WORLD) for g in range(WORLD)]
    assert [p.qids for p in parts] == [batch.qids[:2], batch.qids[2:]]
    # rank g's passages are [its 2 positives ; its 2 hard negatives], gathered rank by rank
    expected = [pid for p in parts for pid in p.positive_pids + [n[0] for n in p.negative_pids]]
    assert gathered_passage_pids(batch, WORLD) == expected
    with pytest.raises(ValueError, match="does not split into 3 equal shards"):
        shard(batch, 0, 3)
    uneven = Batch(batch.qids, batch.queries, batch.positive_pids, [["r1"], [], ["c1"], ["r2"]])
    with pytest.raises(ValueError, match=r"same number of passages .* got \[3, 4\]"):
        gathered_passage_pids(uneven, WORLD)


def test_train_distributed_in_one_process_is_train(toy_data_module):
    a, b = build_model(), build_model()
    small = dataclasses.replace(CONFIG, steps=1)
    assert train_distributed(a, toy_data_module, small, progress=False).series("loss") == \
        train(b, toy_data_module, small, progress=False).series("loss")


@pytest.mark.slow
def test_gathered_negatives_on_every_rank(ranks, toy_data_module):
    batch = first_batch(toy_data_module)
    pids = gathered_passage_pids(batch, WORLD)  # 2 ranks × [2 positives ; 2 negatives]
    model = build_model()
    with torch.no_grad():
        expected = model.embed_passages(toy_data_module.passage_texts(pids))  # step 1 runs on the initial weights
    for got in ranks:
        gathered_pids, gathered = got["gathered"][0]
        assert gathered_pids == pids
        assert gathered.shape == (WORLD * 4, 32)
        torch.testing.assert_close(gathered, expected, rtol=0, atol=1e-10)


@pytest.mark.slow
def test_loss_gradients_and_weights_equal_one_process(ranks, reference):
    for got in ranks:
        # the logged loss is the global-batch loss, on every rank, at both steps
        torch.testing.assert_close(torch.tensor(got["losses"]), torch.tensor(reference["losses"]),
                                   rtol=0, atol=1e-10)
        for name, grad in reference["grads"].items():
            if grad is None:
                assert got["grads"][name] is None, name
            else:
                torch.testing.assert_close(got["grads"][name], grad, rtol=1e-7, atol=1e-10, msg=name)
        for name, value in reference["params"].items():
            torch.testing.assert_close(got["params"][name], value, rtol=0, atol=1e-9, msg=name)
    assert reference["losses"][0] != reference["losses"][1]  # the first update changed the model
