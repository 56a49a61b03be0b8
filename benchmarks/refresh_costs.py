"""What dynamic negatives cost on wiki-car: one ANCE refresh, and one ADORE training step.

* **ANCE refresh** (``retrlab.methods.ance.AnceNegatives.refresh``): re-encode the train split's
  search corpus with the current model, build the faiss index, encode and search the training
  queries, re-mine the pool. Timed by part (the same calls ``retrlab.pool.dense_pool`` makes),
  then once whole through ``AnceNegatives.refresh``.
* **ADORE step** (``retrlab.methods.adore.AdoreStep``): the passage index is frozen, so a step
  embeds only the batch's queries, searches the top-k and back-propagates the rank-weighted
  pairwise loss. Compared with the plain in-batch step (``retrlab.train.contrastive_loss``) on
  the same batches, and with the one-time cost of building ADORE's frozen index.

Model: zero-shot all-MiniLM-L6-v2 (the cost does not depend on the weights). Prints a table and
writes ``benchmarks/results/refresh_costs.json``.

    python benchmarks/refresh_costs.py [--max-length 64] [--batch-size 16] [--top-k 200] [--steps 5]
"""
from __future__ import annotations

import argparse
import platform
import statistics
import time
from contextlib import contextmanager
from pathlib import Path

import torch

from retrlab.cache import atomic_write_json
from retrlab.data import load_wikicar
from retrlab.encoders import BiEncoder
from retrlab.evaluation import encode_corpus
from retrlab.index import FlatIndex
from retrlab.methods.adore import AdoreStep, freeze_passage_tower
from retrlab.methods.ance import AnceNegatives
from retrlab.pool import bm25_pool
from retrlab.train import Learner, QueryBatches, TrainConfig, contrastive_loss

RESULTS = Path(__file__).resolve().parent / "results"


@contextmanager
def timed(seconds: dict[str, float], name: str):
    """``with timed(seconds, "part"): ...`` stores the block's wall time under ``name``."""
    started = time.perf_counter()
    yield
    seconds[name] = time.perf_counter() - started


def step_seconds(model, step_fn, data, batches, config, steps: int) -> list[float]:
    """Wall time of ``steps`` full training steps (loss, backward, clip, optimiser step), after one warm-up."""
    optimizer, _ = Learner([model], config.lr, config.steps, config.weight_decay, config.warmup_ratio).build()
    model.train()
    times = []
    for i in range(steps + 1):
        started = time.perf_counter()
        loss = step_fn(model, data, next(batches), config.tau)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), config.max_grad_norm)
        optimizer.step()
        if i:
            times.append(time.perf_counter() - started)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--max-length", type=int, default=64, help="passage tokens (the notebooks' MAX_LEN)")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--top-k", type=int, default=200, help="ANCE pool depth and ADORE's k")
    parser.add_argument("--steps", type=int, default=5, help="timed training steps per method")
    args = parser.parse_args()

    data = load_wikicar()
    pids, qids = data.search_pids("train"), data.qids("train")
    model = BiEncoder.minilm(passage_max_length=args.max_length).to("cpu")
    print(f"wiki-car train split: {len(pids)} passages, {len(qids)} queries; max length {args.max_length}, "
          f"{torch.get_num_threads()} threads")

    # --- ANCE: one refresh, part by part, then whole -------------------------------------------
    ance: dict[str, float] = {}
    with timed(ance, "encode passages"):
        vectors = encode_corpus(model, data, pids, progress=True)
    with timed(ance, "build index"):
        index = FlatIndex(vectors)
    with timed(ance, "encode queries"):
        query_vectors = model.encode_queries(data.query_texts(qids))
    with timed(ance, "search top-k"):
        index.search(query_vectors, args.top_k + 1)
    negatives = AnceNegatives(data, bm25_pool(data, "train", depth=10), depth=args.top_k)  # a first pool
    with timed(ance, "refresh (AnceNegatives.refresh)"):
        negatives.refresh(model)
    per_passage = ance["encode passages"] / len(pids)

    # --- ADORE: a query-only step against a frozen index, vs the plain in-batch step ------------
    config = TrainConfig(steps=args.steps + 1, batch_size=args.batch_size, lr=2e-5, tau=0.05)
    adore_seconds: dict[str, float] = {}
    with timed(adore_seconds, "index"):
        adore = AdoreStep(vectors, pids, k=args.top_k)
    adore_model = freeze_passage_tower(BiEncoder.minilm(passage_max_length=args.max_length).to("cpu"))
    adore_times = step_seconds(adore_model, adore, data, QueryBatches(data, args.batch_size, 0), config, args.steps)
    plain_model = BiEncoder.minilm(passage_max_length=args.max_length).to("cpu")
    plain_times = step_seconds(plain_model, contrastive_loss, data, QueryBatches(data, args.batch_size, 0),
                               config, args.steps)
    adore_step, plain_step = statistics.median(adore_times), statistics.median(plain_times)

    parts = ("encode passages", "build index", "encode queries", "search top-k")
    print(f"\n{'ANCE refresh, part':34s} {'seconds':>8s}")
    for name in parts:
        print(f"{name:34s} {ance[name]:8.2f}")
    print(f"{'sum of the parts':34s} {sum(ance[n] for n in parts):8.2f}")
    print(f"{'whole refresh (AnceNegatives)':34s} {ance['refresh (AnceNegatives.refresh)']:8.2f}")
    print(f"  = {len(pids) / ance['encode passages']:.1f} passages/s; a refresh costs as much as "
          f"{ance['refresh (AnceNegatives.refresh)'] / plain_step:.1f} in-batch training steps")
    print(f"\n{'training step (batch ' + str(args.batch_size) + ')':34s} {'s/step':>8s}")
    print(f"{'in-batch (contrastive_loss)':34s} {plain_step:8.3f}")
    print(f"{'ADORE (query tower, top-' + str(args.top_k) + ')':34s} {adore_step:8.3f}")
    print(f"{'ADORE frozen index, built once':34s} {adore_seconds['index']:8.3f}")
    atomic_write_json(RESULTS / "refresh_costs.json", {
        "benchmark": "refresh_costs", "args": vars(args), "threads": torch.get_num_threads(),
        "machine": platform.processor() or platform.machine(), "passages": len(pids), "queries": len(qids),
        "ance_seconds": ance, "seconds_per_passage": per_passage,
        "adore_seconds_per_step": adore_step, "inbatch_seconds_per_step": plain_step,
        "adore_index_seconds": adore_seconds["index"],
        "all_step_seconds": {"adore": adore_times, "in-batch": plain_times}})
    print(f"written: {RESULTS / 'refresh_costs.json'}")


if __name__ == "__main__":
    main()
