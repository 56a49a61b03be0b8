"""Does bf16 training reach float32's results? In-batch, top-1 and SimANS negatives, both precisions, several seeds.

The regime is the hard-negative study's (docs/RESULTS.md section 1): all of wiki-car's train split,
a pool of zero-shot MiniLM's top-100, 150 steps x batch 16, AdamW lr 2e-5, tau 0.05, passages at
64 tokens. Each (strategy, precision, seed) trains a fresh all-MiniLM-L6-v2 with the training
forward passes under ``RETRLAB_PRECISION=<precision>`` (``retrlab.precision``: bf16 autocast for
the transformer, float32 scores, loss and optimiser) and is then evaluated in float32, so the
training precision is the only difference. ``bf16-whole`` is *not* retrlab's policy: it wraps the
whole training call in ``torch.autocast(bfloat16)`` -- forward, loss, backward and optimiser -- as
wrapping a training loop in autocast does. autocast keeps the bf16 copy of each weight it casts until
its region exits; until the engine cleared that cache after every optimiser step, every forward pass
of such a run used the first step's weights while AdamW moved the float32 ones blind, and a top-1 run
fell to 0.174 on an AVX512-BF16 CPU (docs/RESULTS.md 1.8). It is kept as the check that it no longer
does. The pool is mined once, in float32. Also measured: how far zero-shot bf16 embeddings are from
float32 ones (cosine), and the time per training step.

The question only makes sense where bf16 is native (a CUDA GPU of compute capability 8+, a CPU with
AVX512-BF16 or AMX): elsewhere bf16 is emulated, about 20x slower, and this takes hours.
Results are written after every run, so an interrupted benchmark keeps what it finished.

    python benchmarks/bf16_training.py [--device cuda] [--steps 150] [--seeds 0 1 2]
        [--strategies in-batch top-1 simans] [--precisions fp32 bf16 bf16-whole] [--out benchmarks/results]
"""
from __future__ import annotations

import argparse
import contextlib
import os
import platform
import statistics
import time
from pathlib import Path

import numpy as np
import torch

from retrlab.cache import atomic_write_json
from retrlab.data import load_wikicar
from retrlab.encoders import BiEncoder
from retrlab.evaluation import dense_run, evaluate_run
from retrlab.negatives.simans import simans_negatives, top_k_negatives
from retrlab.pool import dense_pool
from retrlab.precision import native_bf16
from retrlab.pretraining.comparison import mean_cosine  # the study's collapse gauge
from retrlab.train import TrainConfig, no_negatives, train

RESULTS = Path(__file__).resolve().parent / "results"
STRATEGIES = ("in-batch", "top-1", "simans")
WHOLE = "bf16-whole"  # the whole training call under autocast, backward included: not the policy
PRECISIONS = ("fp32", "bf16", WHOLE)
TAU = 0.05


def sampler_for(strategy: str, pool):
    """The negatives of each strategy: none, the top-1 candidate, or SimANS (a = 0.5/tau^2, b = tau)."""
    if strategy == "in-batch":
        return no_negatives
    if strategy == "top-1":
        return top_k_negatives(pool, n=1)
    return simans_negatives(pool, n=1, a=0.5 / TAU ** 2, b=1.0 * TAU, depth=100, kernel="gaussian-code")


def in_precision(precision: str):
    """Set retrlab's one precision switch (it is read at every forward pass)."""
    os.environ["RETRLAB_PRECISION"] = precision


def training_precision(precision: str, device: torch.device):
    """The context a run trains in: the policy's switch, or (``bf16-whole``) autocast around everything."""
    if precision != WHOLE:
        in_precision(precision)
        return contextlib.nullcontext()
    in_precision("fp32")
    return torch.autocast(device.type, dtype=torch.bfloat16)


def embedding_agreement(model: BiEncoder, texts: list[str]) -> dict:
    """Cosine between the bf16 and the float32 embedding of each text (inference)."""
    in_precision("fp32")
    fp32 = model.encode_passages(texts, progress=False)
    in_precision("bf16")
    bf16 = model.encode_passages(texts, progress=False)
    cosine = (fp32 * bf16).sum(1) / (np.linalg.norm(fp32, axis=1) * np.linalg.norm(bf16, axis=1))
    return {"texts": len(texts), "min_cosine": float(cosine.min()), "median_cosine": float(np.median(cosine))}


def one_run(data, pool, probe, strategy: str, precision: str, seed: int, args) -> dict:
    """Train a fresh MiniLM under ``precision`` and evaluate it on test in float32."""
    model = BiEncoder.minilm(passage_max_length=args.max_length)
    config = TrainConfig(steps=args.steps, batch_size=args.batch_size, lr=2e-5, tau=TAU, seed=seed)
    with training_precision(precision, model.device):
        history = train(model, data, config, sampler=sampler_for(strategy, pool), progress=False)
    in_precision("fp32")
    mrr = evaluate_run(dense_run(model, data, "test", progress=False), data, "test")["MRR@10"]
    _, losses = history.series("loss")
    return {"strategy": strategy, "precision": precision, "seed": seed, "test_mrr10": mrr,
            "loss_first10": statistics.mean(losses[:10]), "loss_last10": statistics.mean(losses[-10:]),
            "max_loss": max(losses), "seconds_per_step": history.last("seconds") / args.steps,
            "final_mean_cosine": mean_cosine(model, probe)}


def spread(values: list[float]) -> float:
    return statistics.stdev(values) if len(values) > 1 else 0.0


def summary(runs: list[dict], strategies, precisions) -> list[dict]:
    """Per strategy: each precision's mean and seed spread, the gap, and whether it is within the spread."""
    rows = []
    for strategy in strategies:
        by = {p: [r["test_mrr10"] for r in runs if r["strategy"] == strategy and r["precision"] == p]
              for p in precisions}
        if not all(by.values()):
            continue
        row = {"strategy": strategy, **{f"{p}_mean": statistics.mean(v) for p, v in by.items()},
               **{f"{p}_std": spread(v) for p, v in by.items()}, "seeds": min(len(v) for v in by.values())}
        if {"fp32", "bf16"} <= set(by):
            row["gap"] = row["bf16_mean"] - row["fp32_mean"]
            if row["seeds"] > 1:  # one seed has no spread to compare with
                row["within_seed_spread"] = abs(row["gap"]) <= max(row["fp32_std"], row["bf16_std"])
        rows.append(row)
    return rows


def print_summary(rows: list[dict], precisions) -> None:
    print(f"\n{'strategy':10s}" + "".join(f"{p + ' test MRR@10':>24s}" for p in precisions) + f"{'bf16-fp32':>10s}  verdict")
    for r in rows:
        cells = "".join(f"{r[p + '_mean']:16.3f} ± {r[p + '_std']:.3f}" for p in precisions)
        verdict = {None: "no seed spread", True: "within the seed spread",
                   False: "OUTSIDE the seed spread"}[r.get("within_seed_spread")]
        print(f"{r['strategy']:10s}{cells}{r.get('gap', 0.0):+10.3f}  {verdict} ({r['seeds']} seeds)")


def machine(device: torch.device) -> dict:
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else (platform.processor() or "cpu")
    return {"device": str(device), "name": name, "native_bf16": native_bf16(device), "torch": torch.__version__,
            "threads": torch.get_num_threads()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default=None, help="cuda, cpu... (default: a GPU when there is one)")
    parser.add_argument("--steps", type=int, default=150)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--max-length", type=int, default=64, help="passage tokens")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--strategies", nargs="+", choices=STRATEGIES, default=list(STRATEGIES))
    parser.add_argument("--precisions", nargs="+", choices=PRECISIONS, default=["fp32", "bf16"])
    parser.add_argument("--out", type=Path, default=RESULTS, help="folder for bf16_training_<device>.json")
    parser.add_argument("--subset", type=int, default=0, help="train queries kept (0: all; a quick check)")
    args = parser.parse_args()
    if args.device:
        os.environ["RETRLAB_DEVICE"] = args.device  # BiEncoder's device (retrlab.utils.default_device)

    data = load_wikicar()
    if args.subset:
        data = data.subset({"train": args.subset, "dev": 20, "test": 40})
    in_precision("fp32")
    zero_shot = BiEncoder.minilm(passage_max_length=args.max_length)
    device = zero_shot.device
    target = args.out / f"bf16_training_{device.type}.json"
    pool = dense_pool(zero_shot, data, "train", depth=100, source="zero-shot")
    probe = data.passage_texts(data.search_pids("dev")[:100])
    report = {"machine": machine(device), "args": {k: str(v) for k, v in vars(args).items()},
              "embeddings": embedding_agreement(zero_shot, data.passage_texts(data.search_pids("test")))}
    for precision in dict.fromkeys(p if p != WHOLE else "bf16" for p in args.precisions):
        in_precision(precision)  # zero-shot retrieval with bf16 inference, too
        report[f"zero_shot_test_mrr10_{precision}"] = evaluate_run(
            dense_run(zero_shot, data, "test", progress=False), data, "test")["MRR@10"]
    print(f"{report['machine']}\nembeddings bf16 vs fp32: {report['embeddings']}")
    runs, started = [], time.perf_counter()
    for seed in args.seeds:
        for strategy in args.strategies:
            for precision in args.precisions:
                runs.append(one_run(data, pool, probe, strategy, precision, seed, args))
                r = runs[-1]
                print(f"[{time.perf_counter() - started:6.0f} s] {strategy:8s} {precision} seed {seed}: "
                      f"test MRR@10 {r['test_mrr10']:.3f}, loss {r['loss_first10']:.2f} -> {r['loss_last10']:.2f}"
                      f" (max {r['max_loss']:.2f}), gauge {r['final_mean_cosine']:.2f}, "
                      f"{r['seconds_per_step'] * 1000:.0f} ms/step", flush=True)
                report.update(runs=runs, summary=summary(runs, args.strategies, args.precisions))
                atomic_write_json(target, report)
    print_summary(report["summary"], args.precisions)
    print(f"written: {target}")


if __name__ == "__main__":
    main()
