"""Fine-tune MiniLM on wiki-car with several processes: DDP + cross-device negatives.

    # 2 processes on one machine's CPUs (gloo), or one per GPU (nccl):
    torchrun --standalone --nproc-per-node=2 examples/train_ddp.py --steps 50 --batch-size 32
    # the same script in one process (plain retrlab.train.train):
    python examples/train_ddp.py --steps 50 --batch-size 32

``--batch-size`` is the global batch: each of the G processes embeds batch/G queries with their
positives and ``--hard-negatives`` BM25 negatives, and scores them against the passages of all
processes (``retrlab.ddp.train_distributed``). Rank 0 evaluates on the test split and
saves the model.
"""
from __future__ import annotations

import argparse
import time

import torch.distributed as dist

from retrlab.data import load_wikicar
from retrlab.ddp import cleanup, rank, setup, train_distributed, world_size
from retrlab.encoders import BiEncoder
from retrlab.evaluation import evaluate_model
from retrlab.negatives.uniform import uniform_from_pool
from retrlab.pool import bm25_pool
from retrlab.train import TrainConfig
from retrlab.utils import smoke_mode


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=4 if smoke_mode() else 50)
    parser.add_argument("--batch-size", type=int, default=8 if smoke_mode() else 32, help="global batch")
    parser.add_argument("--hard-negatives", type=int, default=1, help="BM25 negatives per query (0: in-batch only)")
    parser.add_argument("--max-length", type=int, default=48 if smoke_mode() else 64)
    parser.add_argument("--lr", type=float, default=2e-5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--save", default=None, help="folder for the fine-tuned model (rank 0 writes it)")
    args = parser.parse_args()

    device = setup()  # joins torchrun's process group; a no-op in a plain python run
    if rank() == 0:
        load_wikicar()  # rank 0 builds the cache first, so the ranks never build it side by side
    if dist.is_initialized():
        dist.barrier()
    data = load_wikicar()
    if smoke_mode():
        data = data.subset({"train": 100, "dev": 40, "test": 80})
    # every rank builds the same pool and strategy: the same seed then draws the same global batches
    strategy = uniform_from_pool(bm25_pool(data, "train", depth=10), n=args.hard_negatives)
    model = BiEncoder.minilm(passage_max_length=args.max_length)
    config = TrainConfig(steps=args.steps, batch_size=args.batch_size, lr=args.lr, tau=0.05, seed=args.seed)
    if rank() == 0:
        print(f"{world_size()} process(es) on {device}; global batch {args.batch_size} = "
              f"{args.batch_size // world_size()} queries per process, each with 1 positive and "
              f"{args.hard_negatives} BM25 negative(s); {args.steps} steps")
    started = time.perf_counter()
    history = train_distributed(model, data, config, strategy)
    if rank() == 0:
        print(f"trained in {time.perf_counter() - started:.1f} s; loss {history.rows[0]['loss']:.3f} -> "
              f"{history.last('loss'):.3f}")
        print("test:", {k: round(v, 4) for k, v in evaluate_model(model, data, "test").items()})
        if args.save:
            print("saved to", model.save_pretrained(args.save))
    cleanup()


if __name__ == "__main__":
    main()
