"""Does the cross-encoder train and re-rank as well under bf16 as in float32?

The shared cross-encoder (``retrlab.artifacts.cross_encoder``: MiniLM read jointly, segment-cosine
head, pointwise BCE on warm-up-pool negatives, 60 steps of 6 queries x 4 pairs) is trained from
scratch once per (precision, seed), with its forward passes under ``RETRLAB_PRECISION=<precision>``
(``retrlab.precision``: bf16 autocast around the transformer only; the head, the loss and AdamW in
float32). Each is then graded in float32 on every dev query: re-ranking zero-shot MiniLM's top-10
(MRR@10), so the training precision is the only difference. Also measured: how far one model's
bf16 logits are from its float32 ones at inference, and the seconds per training step.

The check that the policy may cover the cross-encoder (AR2's ranker, RocketQA's denoiser, notebook
05's and 06's shared artifact) on hardware with native bf16; elsewhere bf16 is emulated and slow.

    python benchmarks/bf16_cross_encoder.py [--seeds 0 1 2] [--precisions fp32 bf16] [--quick] [--out benchmarks/results]

``--quick`` checks the script itself in seconds: a 40-query subset, the smoke-mode warm-up pool and
cross-encoder budget (3 steps); its numbers mean nothing.
"""
from __future__ import annotations

import argparse
import statistics
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from bf16_training import in_precision, machine, spread
from retrlab.artifacts import cross_encoder_budget, warmup_pool
from retrlab.cache import atomic_write_json
from retrlab.data import load_wikicar
from retrlab.encoders import CrossEncoder
from retrlab.rerank import rerank_report, score_candidates, train_cross_encoder
from retrlab.utils import default_device

RESULTS = Path(__file__).resolve().parent / "results"


def logit_agreement(model: CrossEncoder, data, pool, n_queries: int = 40) -> dict:
    """bf16 vs float32 logits of one model on each query's labelled positive and pool top-9."""
    qids = pool.qids[:n_queries]
    candidates = [[data.positives[q][0]] + pool.candidates(q)[0][:9] for q in qids]
    logits = {}
    for precision in ("fp32", "bf16"):
        in_precision(precision)
        logits[precision] = [np.log(p) - np.log1p(-p)  # (candidates,) logits of one query
                             for p in score_candidates(model, data, qids, candidates, progress=False)]
    diff = np.abs(np.concatenate(logits["bf16"]) - np.concatenate(logits["fp32"]))
    same_top = np.mean([np.argmax(a) == np.argmax(b) for a, b in zip(logits["fp32"], logits["bf16"])])
    return {"pairs": len(diff), "max_abs_logit_diff": float(diff.max()), "median_abs_logit_diff": float(np.median(diff)),
            "same_top_candidate": float(same_top)}


def one_run(data, pool, precision: str, seed: int, quick: bool = False) -> tuple[dict, CrossEncoder]:
    """Train a fresh cross-encoder under ``precision``; grade it in float32 on all dev queries."""
    budget = replace(cross_encoder_budget(smoke=quick), seed=seed)
    model = CrossEncoder.minilm(max_length=budget.max_length)
    in_precision(precision)
    history = train_cross_encoder(model, data, pool, budget, progress=False)
    in_precision("fp32")
    report = rerank_report(model, data, "dev", n_queries=len(data.qids("dev")), depth=10)
    _, losses = history.series("loss")
    return {"precision": precision, "seed": seed, "dev_reranked_mrr10": report["reranked"]["MRR@10"],
            "dev_first_stage_mrr10": report["first_stage"]["MRR@10"], "loss_last10": statistics.mean(losses[-10:]),
            "seconds_per_step": history.last("seconds") / budget.steps}, model


def summary(runs: list[dict], precisions) -> dict:
    by = {p: [r["dev_reranked_mrr10"] for r in runs if r["precision"] == p] for p in precisions}
    row = {**{f"{p}_mean": statistics.mean(v) for p, v in by.items() if v},
           **{f"{p}_std": spread(v) for p, v in by.items() if v},
           **{f"{p}_seconds_per_step": statistics.mean(r["seconds_per_step"] for r in runs if r["precision"] == p)
              for p, v in by.items() if v}}
    if all(by.get(p) for p in ("fp32", "bf16")):
        row["gap"] = row["bf16_mean"] - row["fp32_mean"]
        row["within_seed_spread"] = abs(row["gap"]) <= max(row["fp32_std"], row["bf16_std"])
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--precisions", nargs="+", choices=("fp32", "bf16"), default=["fp32", "bf16"])
    parser.add_argument("--out", type=Path, default=RESULTS, help="folder for bf16_cross_encoder.json")
    parser.add_argument("--quick", action="store_true", help="a seconds-long check of the script (see above)")
    args = parser.parse_args()
    data = load_wikicar()
    if args.quick:
        data = data.subset({"train": 40, "dev": 10, "test": 10})
    in_precision("fp32")
    pool = warmup_pool(data, smoke=args.quick)  # the shared artifact's negatives (built once, cached)
    report = {"machine": machine(default_device()), "args": {k: str(v) for k, v in vars(args).items()}}
    runs, started = [], time.perf_counter()
    for seed in args.seeds:
        for precision in args.precisions:
            run, model = one_run(data, pool, precision, seed, args.quick)
            runs.append(run)
            if "agreement" not in report:  # one trained model's logits, read both ways
                report["agreement"] = logit_agreement(model, data, pool)
                print(f"logits bf16 vs fp32: {report['agreement']}")
            print(f"[{time.perf_counter() - started:5.0f} s] {precision} seed {seed}: dev re-ranked MRR@10 "
                  f"{run['dev_reranked_mrr10']:.3f} (first stage {run['dev_first_stage_mrr10']:.3f}), loss "
                  f"{run['loss_last10']:.3f}, {run['seconds_per_step'] * 1000:.0f} ms/step", flush=True)
            report.update(runs=runs, summary=summary(runs, args.precisions))
            atomic_write_json(args.out / "bf16_cross_encoder.json", report)
    print(report["summary"])


if __name__ == "__main__":
    main()
