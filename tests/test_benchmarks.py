"""The benchmarks' own arithmetic (benchmarks/*.py are scripts: loaded from their files), and the
JAX memory guard that let the bf16 benchmark train on a GPU."""
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def load(script: str):
    spec = importlib.util.spec_from_file_location(script, BENCHMARKS / f"{script}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def runs(strategy: str, precision: str, mrrs: list[float]) -> list[dict]:
    return [{"strategy": strategy, "precision": precision, "seed": s, "test_mrr10": m} for s, m in enumerate(mrrs)]


def test_bf16_summary_gives_means_spreads_and_the_verdict_per_strategy():
    bench = load("bf16_training")
    result = (runs("in-batch", "fp32", [0.66, 0.67, 0.68]) + runs("in-batch", "bf16", [0.665, 0.675, 0.67])
              + runs("top-1", "fp32", [0.40, 0.41, 0.42]) + runs("top-1", "bf16", [0.17, 0.18, 0.19])
              + runs("simans", "fp32", [0.67]) + runs("simans", "bf16", [0.68]))
    rows = {r["strategy"]: r for r in bench.summary(result, bench.STRATEGIES, ("fp32", "bf16"))}
    assert rows["in-batch"]["fp32_mean"] == pytest.approx(0.67) and rows["in-batch"]["fp32_std"] == pytest.approx(0.01)
    assert rows["in-batch"]["gap"] == pytest.approx(0.0) and rows["in-batch"]["within_seed_spread"]
    assert rows["top-1"]["gap"] == pytest.approx(-0.23) and not rows["top-1"]["within_seed_spread"]
    assert rows["simans"]["seeds"] == 1 and rows["simans"]["gap"] == pytest.approx(0.01)
    assert "within_seed_spread" not in rows["simans"]  # one seed has no spread to judge a gap by


def test_a_strategy_missing_a_precision_is_left_out():
    bench = load("bf16_training")
    rows = bench.summary(runs("top-1", "fp32", [0.4, 0.5]), bench.STRATEGIES, ("fp32", "bf16"))
    assert rows == []


@pytest.mark.parametrize("preset, expected", [(None, "false"), ("true", "true")])
def test_bm25_keeps_jax_from_taking_the_gpu_unless_told_otherwise(preset, expected):
    env = {k: v for k, v in os.environ.items() if k != "XLA_PYTHON_CLIENT_PREALLOCATE"}
    if preset is not None:
        env["XLA_PYTHON_CLIENT_PREALLOCATE"] = preset
    code = "import os, retrlab.bm25; print(os.environ['XLA_PYTHON_CLIENT_PREALLOCATE'])"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == expected


def test_bf16_benchmark_runs_end_to_end_and_writes_its_report(tmp_path):
    # The smallest real run: one top-1 training of one step on a 20-query subset, float32 only.
    args = ["--device", "cpu", "--steps", "1", "--batch-size", "2", "--subset", "20", "--seeds", "0",
            "--strategies", "top-1", "--precisions", "fp32", "--out", str(tmp_path)]
    out = subprocess.run([sys.executable, str(BENCHMARKS / "bf16_training.py"), *args],
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    report = json.loads((tmp_path / "bf16_training_cpu.json").read_text())
    assert [(r["strategy"], r["precision"], r["seed"]) for r in report["runs"]] == [("top-1", "fp32", 0)]
    assert 0 < report["runs"][0]["test_mrr10"] <= 1 and report["embeddings"]["min_cosine"] > 0.999
    assert report["summary"][0]["seeds"] == 1 and "no seed spread" in out.stdout
