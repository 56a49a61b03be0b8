"""Can a training knob save the top-1 run? Learning rate, temperature, warm-up and clipping (docs/RESULTS.md 1.6).

The regime is the hard-negative study's (docs/RESULTS.md section 1): all of wiki-car's train split, a
pool of zero-shot MiniLM's top-100, 150 steps x batch 16, AdamW lr 2e-5 with 10% linear warm-up, gradient
clipping at 1.0, tau 0.05, passages at 64 tokens, in-batch negatives plus each query's top-1 candidate.
Each *setting* changes one knob of that run:

    base          the run as above (test MRR@10 0.415 at seed 0 in section 1.1)
    lr=1e-5       a smaller learning rate (any float)
    tau=0.1       a softer softmax (any float > 0)
    warmup=0.3    the share of steps spent warming up (0..1)
    clip=0.25     the gradient norm clipped to (a float, or "none": no clipping)
    inbatch       no mined negative at all: the reference the knobs are measured against

Curves every ``--every`` steps: dev MRR@10 (all dev queries; conclusions are drawn on dev) and the study's
collapse gauge (mean cosine between 100 fixed dev passages). Every step: the training loss and the
gradient norm before clipping. At the end: test MRR@10, for the record only. Results are written after
every run, so an interrupted sweep keeps what it finished.

    python benchmarks/top1_knobs.py [--settings base tau=0.1 ...] [--seeds 0 1 2] [--steps 150]
        [--every 10] [--out benchmarks/results]
"""
from __future__ import annotations

import argparse
import math
import statistics
import time
from dataclasses import replace
from pathlib import Path

from retrlab.cache import atomic_write_json, load_json
from retrlab.data import load_wikicar
from retrlab.encoders import BiEncoder
from retrlab.evaluation import dense_run, evaluate_run
from retrlab.negatives.simans import top_k_negatives
from retrlab.pool import dense_pool
from retrlab.pretraining.comparison import mean_cosine  # the study's collapse gauge
from retrlab.train import Hook, TrainConfig, no_negatives, train

RESULTS = Path(__file__).resolve().parent / "results"
BASE = TrainConfig(steps=150, batch_size=16, lr=2e-5, tau=0.05, warmup_ratio=0.1, max_grad_norm=1.0)
KNOBS = {"lr": "lr", "tau": "tau", "warmup": "warmup_ratio", "clip": "max_grad_norm"}


def parse_setting(setting: str, base: TrainConfig = BASE) -> tuple[TrainConfig, bool]:
    """``"knob=value"`` (or ``"base"``, ``"inbatch"``) -> the run's config and whether it mines top-1."""
    if setting in ("base", "inbatch"):
        return base, setting == "base"
    knob, _, value = setting.partition("=")
    if knob not in KNOBS or not value:
        raise ValueError(f"setting {setting!r}: expected 'base', 'inbatch' or knob=value with knob in {sorted(KNOBS)}")
    number = math.inf if (knob, value) == ("clip", "none") else float(value)
    return replace(base, **{KNOBS[knob]: number}), True  # TrainConfig checks the value's range


def dev_probe(data, probe: list[str]):
    """The hook's measurement: dev MRR@10 and the collapse gauge of the model as it is now."""
    def measure(step: int, model: BiEncoder) -> dict:
        run = dense_run(model, data, "dev", progress=False)
        return {"dev_mrr10": evaluate_run(run, data, "dev")["MRR@10"], "gauge": mean_cosine(model, probe)}
    return measure


def one_run(data, pool, probe, setting: str, seed: int, args) -> dict:
    """Train a fresh MiniLM under ``setting``; its curves, its end state and its test MRR@10."""
    config, mines = parse_setting(setting, replace(BASE, steps=args.steps))
    config = replace(config, seed=seed)
    model = BiEncoder.minilm(passage_max_length=args.max_length)
    history = train(model, data, config, sampler=top_k_negatives(pool, n=1) if mines else no_negatives,
                    hooks=[Hook(args.every, dev_probe(data, probe))], progress=False)
    steps, dev = history.series("dev_mrr10")
    _, losses = history.series("loss")
    _, norms = history.series("grad_norm")
    test = evaluate_run(dense_run(model, data, "test", progress=False), data, "test")["MRR@10"]
    return {"setting": setting, "seed": seed, "steps": args.steps, "test_mrr10": test, "curve_steps": steps, "dev_mrr10": dev,
            "gauge": history.series("gauge")[1], "loss": losses, "grad_norm": norms,
            "seconds": history.last("seconds")}


def mean_std(values: list[float]) -> tuple[float, float]:
    return statistics.mean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def summary(runs: list[dict], start: dict) -> list[dict]:
    """One row per setting (mean over its seeds): dev MRR@10 at the end and at its best step, the
    gauge at the end, the last 10 steps' loss, the median gradient norm, test MRR@10."""
    rows = []
    for setting in dict.fromkeys(r["setting"] for r in runs):
        mine = [r for r in runs if r["setting"] == setting]
        best = [max(zip(r["dev_mrr10"], r["curve_steps"])) for r in mine]
        rows.append({
            "setting": setting, "seeds": [r["seed"] for r in mine],
            "dev_end": mean_std([r["dev_mrr10"][-1] for r in mine]),
            "dev_best": statistics.mean(b[0] for b in best), "best_step": statistics.median(b[1] for b in best),
            "gauge_end": statistics.mean(r["gauge"][-1] for r in mine),
            "loss_last10": statistics.mean(statistics.mean(r["loss"][-10:]) for r in mine),
            "grad_norm_median": statistics.mean(statistics.median(r["grad_norm"]) for r in mine),
            "test": mean_std([r["test_mrr10"] for r in mine]),
            "dev_gap_to_start": statistics.mean(r["dev_mrr10"][-1] for r in mine) - start["dev_mrr10"]})
    return rows


def print_summary(rows: list[dict], start: dict) -> None:
    print(f"\nzero-shot start: dev MRR@10 {start['dev_mrr10']:.3f}, gauge {start['gauge']:.2f}, "
          f"test MRR@10 {start['test_mrr10']:.3f}")
    print(f"{'setting':12s} {'seeds':8s} {'dev end':>15s} {'dev best (step)':>16s} {'gauge':>6s} "
          f"{'loss':>6s} {'|g|':>6s} {'test':>15s}")
    for r in rows:
        seeds = ",".join(map(str, r["seeds"]))
        print(f"{r['setting']:12s} {seeds:8s} {r['dev_end'][0]:8.3f} ± {r['dev_end'][1]:.3f} "
              f"{r['dev_best']:9.3f} ({r['best_step']:3.0f}) {r['gauge_end']:6.2f} {r['loss_last10']:6.3f} "
              f"{r['grad_norm_median']:6.2f} {r['test'][0]:8.3f} ± {r['test'][1]:.3f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--settings", nargs="+", default=["base", "lr=1e-5", "tau=0.1", "tau=0.2", "warmup=0",
                                                           "warmup=0.3", "clip=0.25", "clip=none"])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--steps", type=int, default=BASE.steps)
    parser.add_argument("--every", type=int, default=10, help="steps between dev measurements")
    parser.add_argument("--max-length", type=int, default=64, help="passage tokens")
    parser.add_argument("--subset", type=int, default=0, help="train queries kept (0: all; a quick check)")
    parser.add_argument("--out", type=Path, default=RESULTS, help="folder for top1_knobs.json")
    args = parser.parse_args()
    for setting in args.settings:
        parse_setting(setting)  # a typo fails now, not an hour in

    data = load_wikicar()
    if args.subset:
        data = data.subset({"train": args.subset, "dev": 20, "test": 40})
    zero_shot = BiEncoder.minilm(passage_max_length=args.max_length)
    pool = dense_pool(zero_shot, data, "train", depth=100, source="zero-shot")
    probe = data.passage_texts(data.search_pids("dev")[:100])
    start = {**dev_probe(data, probe)(0, zero_shot),
             "test_mrr10": evaluate_run(dense_run(zero_shot, data, "test", progress=False), data, "test")["MRR@10"]}
    target = args.out / "top1_knobs.json"
    done = load_json(target)["runs"] if target.exists() and not args.subset else []  # a sweep adds to what ran
    redone = {(s, seed) for s in args.settings for seed in args.seeds}
    runs = [r for r in done if r["steps"] == args.steps and (r["setting"], r["seed"]) not in redone]
    started = time.perf_counter()
    for seed in args.seeds:
        for setting in args.settings:
            r = one_run(data, pool, probe, setting, seed, args)
            runs.append(r)
            print(f"[{time.perf_counter() - started:6.0f} s] {setting:10s} seed {seed}: dev MRR@10 "
                  f"{r['dev_mrr10'][-1]:.3f} (best {max(r['dev_mrr10']):.3f}), gauge {r['gauge'][-1]:.2f}, "
                  f"loss {statistics.mean(r['loss'][-10:]):.3f}, test {r['test_mrr10']:.3f}", flush=True)
            atomic_write_json(target, {"args": {k: str(v) for k, v in vars(args).items()}, "start": start,
                                       "runs": runs, "summary": summary(runs, start)})
    print_summary(summary(runs, start), start)
    print(f"written: {target}")


if __name__ == "__main__":
    main()
