"""Can a training knob save the top-1 run, and which negatives break it? (docs/RESULTS.md 1.6 and 1.7)

The regime is the hard-negative study's (docs/RESULTS.md section 1): all of wiki-car's train split, a
pool of zero-shot MiniLM's top-100, 150 steps x batch 16, AdamW lr 2e-5 with 10% linear warm-up, gradient
clipping at 1.0, tau 0.05, passages at 64 tokens, in-batch negatives plus each query's top-1 candidate.
Each *setting* changes one thing of that run, a training knob or where its one mined negative comes from:

    base          the run as above (test MRR@10 0.415 at seed 0 in section 1.1)
    lr=1e-5       a smaller learning rate (any float)
    tau=0.1       a softer softmax (any float > 0)
    warmup=0.3    the share of steps spent warming up (0..1)
    clip=0.25     the gradient norm clipped to (a float, or "none": no clipping)
    inbatch       no mined negative at all: the reference the knobs are measured against
    ranks=5-30    the negative drawn uniformly from the pool's ranks 5..30 instead of rank 1 (any a-b)
    article=same  the highest-ranked candidate from the query's own article that is not relevant
    article=other the highest-ranked candidate from another article (the hardest off-topic negative)

    SETTING@body  any setting on passages without their "Title: " prefix (pool, training and evaluation)

The article settings use the ground truth to drop hidden positives, so they compare the topic of a negative,
not its label noise. A query with no such candidate in its top-100 gets its rank-100 candidate (counted).
Every wiki-car passage starts with its article's title, as the query does; ``@body`` asks what that shared
prefix does (its zero-shot start is measured on the same body-only passages).

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
from retrlab.data import RetrievalData, load_wikicar
from retrlab.data.wikicar import relation
from retrlab.encoders import BiEncoder
from retrlab.evaluation import dense_run, evaluate_run
from retrlab.negatives.simans import top_k_negatives
from retrlab.negatives.uniform import uniform_from_pool
from retrlab.pool import dense_pool
from retrlab.pretraining.comparison import mean_cosine  # the study's collapse gauge
from retrlab.train import Hook, TrainConfig, no_negatives, train

RESULTS = Path(__file__).resolve().parent / "results"
BASE = TrainConfig(steps=150, batch_size=16, lr=2e-5, tau=0.05, warmup_ratio=0.1, max_grad_norm=1.0)
KNOBS = {"lr": "lr", "tau": "tau", "warmup": "warmup_ratio", "clip": "max_grad_norm"}
BODY = "@body"  # a setting's suffix: passages without their title


def parse_setting(setting: str, base: TrainConfig = BASE) -> tuple[TrainConfig, str | None]:
    """``"knob=value"``, ``"ranks=a-b"``, ``"article=same|other"`` (or ``"base"``, ``"inbatch"``) -> the run's
    config and where its mined negative comes from (``"top-1"``, the setting itself, or None: none mined)."""
    setting = setting.removesuffix(BODY)
    if setting in ("base", "inbatch"):
        return base, "top-1" if setting == "base" else None
    knob, _, value = setting.partition("=")
    if knob == "ranks":
        rank_window(value)  # a malformed window fails here
        return base, setting
    if knob == "article":
        if value not in ("same", "other"):
            raise ValueError(f"setting {setting!r}: article must be 'same' or 'other'")
        return base, setting
    if knob not in KNOBS or not value:
        raise ValueError(f"setting {setting!r}: expected 'base', 'inbatch', ranks=a-b, article=same|other "
                         f"or knob=value with knob in {sorted(KNOBS)}")
    number = math.inf if (knob, value) == ("clip", "none") else float(value)
    return replace(base, **{KNOBS[knob]: number}), "top-1"  # TrainConfig checks the value's range


def rank_window(value: str) -> tuple[int, int]:
    """``"5-30"`` -> (5, 30): 1-based pool ranks, both included."""
    first, _, last = value.partition("-")
    if not (first.isdigit() and last.isdigit()) or not 1 <= int(first) <= int(last) <= 100:
        raise ValueError(f"ranks must be a-b with 1 <= a <= b <= 100 (the pool's depth), got {value!r}")
    return int(first), int(last)


def first_candidate(data, pool, keep) -> dict[str, str]:
    """Each query's highest-ranked pool candidate ``p`` with ``keep(relation(data, q, p))`` (its last if none)."""
    picks, missing = {}, 0
    for q in pool.qids:
        pids = pool.candidates(q)[0]
        picks[q] = next((p for p in pids if keep(relation(data, q, p))), None)
        if picks[q] is None:
            picks[q], missing = pids[-1], missing + 1
    print(f"{missing} of {len(picks)} queries have no such candidate in their pool: they get their last one")
    return picks


def negatives(source: str, data, pool):
    """The sampler of one mined negative per query for ``source`` (see the module's settings)."""
    if source == "top-1":
        return top_k_negatives(pool, n=1)
    knob, _, value = source.partition("=")
    if knob == "ranks":
        first, last = rank_window(value)
        return uniform_from_pool(pool, n=1, skip=first - 1, depth=last)
    if value == "same":  # any place in the query's own article but a hidden positive
        picks = first_candidate(data, pool, lambda r: r not in ("relevant", "other-article"))
    else:
        picks = first_candidate(data, pool, lambda r: r == "other-article")
    return lambda qid, rng: [picks[qid]]


def recording(draw, picked: list[tuple[str, str]]):
    """``draw``, appending each (query, negative) it returns to ``picked``."""
    def sampler(qid: str, rng):
        pids = draw(qid, rng)
        picked.extend((qid, p) for p in pids)
        return pids
    return sampler


def pool_ranks(pool, picked: list[tuple[str, str]]) -> list[int]:
    """The 1-based pool rank of each (query, negative) a run trained on."""
    return [pool.candidates(q)[0].index(p) + 1 for q, p in picked]


def untitled(data: RetrievalData) -> RetrievalData:
    """wiki-car with every passage's title dropped: the encoders see ``"body"``, not ``"Title: body"``."""
    corpus = {pid: {**doc, "title": ""} for pid, doc in data.corpus.items()}
    return RetrievalData(f"{data.name}-body", corpus, data.queries, data.qrels, data.positives, data.splits,
                         data.split_pids)


def regime(data: RetrievalData, max_length: int) -> dict:
    """What every run on ``data`` shares: the zero-shot pool, the gauge's probe and the zero-shot start."""
    zero_shot = BiEncoder.minilm(passage_max_length=max_length)
    pool = dense_pool(zero_shot, data, "train", depth=100, source="zero-shot")
    probe = data.passage_texts(data.search_pids("dev")[:100])
    test = evaluate_run(dense_run(zero_shot, data, "test", progress=False), data, "test")["MRR@10"]
    return {"data": data, "pool": pool, "probe": probe,
            "start": {**dev_probe(data, probe)(0, zero_shot), "test_mrr10": test}}


def dev_probe(data, probe: list[str]):
    """The hook's measurement: dev MRR@10 and the collapse gauge of the model as it is now."""
    def measure(step: int, model: BiEncoder) -> dict:
        run = dense_run(model, data, "dev", progress=False)
        return {"dev_mrr10": evaluate_run(run, data, "dev")["MRR@10"], "gauge": mean_cosine(model, probe)}
    return measure


def one_run(shared: dict, setting: str, seed: int, args) -> dict:
    """Train a fresh MiniLM under ``setting`` in ``shared`` (a ``regime``); its curves, end state, test MRR@10."""
    data, pool, probe = shared["data"], shared["pool"], shared["probe"]
    config, source = parse_setting(setting, replace(BASE, steps=args.steps))
    config = replace(config, seed=seed)
    model = BiEncoder.minilm(passage_max_length=args.max_length)
    picked: list[tuple[str, str]] = []  # (query, negative) pairs as trained on, for their pool ranks
    sampler = recording(negatives(source, data, pool), picked) if source else no_negatives
    history = train(model, data, config, sampler=sampler, hooks=[Hook(args.every, dev_probe(data, probe))],
                    progress=False)
    steps, dev = history.series("dev_mrr10")
    _, losses = history.series("loss")
    _, norms = history.series("grad_norm")
    test = evaluate_run(dense_run(model, data, "test", progress=False), data, "test")["MRR@10"]
    ranks = pool_ranks(pool, picked)
    return {"setting": setting, "seed": seed, "steps": args.steps, "test_mrr10": test, "curve_steps": steps, "dev_mrr10": dev,
            "gauge": history.series("gauge")[1], "loss": losses, "grad_norm": norms,
            "negative_rank_median": statistics.median(ranks) if ranks else None,
            "start_dev_mrr10": shared["start"]["dev_mrr10"], "seconds": history.last("seconds")}


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
            "negative_rank_median": mine[0].get("negative_rank_median"),
            "dev_gap_to_start": statistics.mean(r["dev_mrr10"][-1] - r.get("start_dev_mrr10", start["dev_mrr10"])
                                                for r in mine)})
    return rows


def print_summary(rows: list[dict], start: dict) -> None:
    print(f"\nzero-shot start: dev MRR@10 {start['dev_mrr10']:.3f}, gauge {start['gauge']:.2f}, "
          f"test MRR@10 {start['test_mrr10']:.3f}")
    print(f"{'setting':13s} {'seeds':8s} {'dev end':>15s} {'dev best (step)':>16s} {'gauge':>6s} "
          f"{'loss':>6s} {'|g|':>6s} {'test':>15s}")
    for r in rows:
        seeds = ",".join(map(str, r["seeds"]))
        print(f"{r['setting']:13s} {seeds:8s} {r['dev_end'][0]:8.3f} ± {r['dev_end'][1]:.3f} "
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
    regimes: dict[str, dict] = {}  # the titled ("") and body-only (BODY) regimes, each built when first needed

    def shared_for(kind: str) -> dict:
        if kind not in regimes:
            regimes[kind] = regime(untitled(data) if kind else data, args.max_length)
        return regimes[kind]

    target = args.out / "top1_knobs.json"
    previous = load_json(target) if target.exists() and not args.subset else {"runs": []}  # a sweep adds to it
    done = previous["runs"]
    same_length = previous.get("args", {}).get("max_length") == str(args.max_length)
    starts = {k: previous[k] for k in ("start", "start_body") if k in previous and same_length}
    if "start" not in starts:  # the titled start anchors the summary; an earlier sweep's is reused
        starts["start"] = shared_for("")["start"]
    redone = {(s, seed) for s in args.settings for seed in args.seeds}
    runs = [r for r in done if r["steps"] == args.steps and (r["setting"], r["seed"]) not in redone]
    started = time.perf_counter()
    for seed in args.seeds:
        for setting in args.settings:
            kind = BODY if setting.endswith(BODY) else ""
            r = one_run(shared_for(kind), setting, seed, args)
            runs.append(r)
            print(f"[{time.perf_counter() - started:6.0f} s] {setting:10s} seed {seed}: dev MRR@10 "
                  f"{r['dev_mrr10'][-1]:.3f} (best {max(r['dev_mrr10']):.3f}), gauge {r['gauge'][-1]:.2f}, "
                  f"loss {statistics.mean(r['loss'][-10:]):.3f}, test {r['test_mrr10']:.3f}", flush=True)
            starts.update({"start_body" if k else "start": shared["start"] for k, shared in regimes.items()})
            atomic_write_json(target, {"args": {k: str(v) for k, v in vars(args).items()}, **starts,
                                       "runs": runs, "summary": summary(runs, starts["start"])})
    print_summary(summary(runs, starts["start"]), starts["start"])
    if "start_body" in starts:
        body = starts["start_body"]
        print(f"zero-shot start on body-only passages ({BODY}): dev MRR@10 {body['dev_mrr10']:.3f}, "
              f"gauge {body['gauge']:.2f}, test MRR@10 {body['test_mrr10']:.3f}")
    print(f"written: {target}")


if __name__ == "__main__":
    main()
