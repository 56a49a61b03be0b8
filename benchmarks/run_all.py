"""Every retrlab-vs-sentence-transformers benchmark in one run: encode and training step, fp32 and bf16.

Runs ``encode_throughput.py`` and ``train_step.py`` once per precision (each in its own process, so
one's allocations do not slow the next), then prints one table of throughput ratios (retrlab /
sentence-transformers: above 1 means retrlab is faster) and writes
``benchmarks/results/summary.json``. On a CPU without native bf16 (AVX2 only) bf16 is emulated and
slower than fp32 for both systems; the ratio still compares like with like. ``--device cuda``
runs both on a GPU, where bf16 is native.

    python benchmarks/run_all.py [--quick] [--device cpu] [--out benchmarks/results]
"""
from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
from pathlib import Path

import torch

from retrlab.cache import atomic_write_json
from retrlab.precision import native_bf16

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
PRECISIONS = ("fp32", "bf16")


def run_benchmark(script: str, precision: str, args: argparse.Namespace) -> dict:
    """Run one benchmark script in a fresh process and read back the JSON it wrote."""
    flags = ["--precision", precision, "--device", args.device, "--out", str(args.out)]
    if args.quick:
        flags += ["--passages", "200", "--repeats", "2"] if script == "encode_throughput" else ["--steps", "3"]
    elif args.device.startswith("cuda"):  # GPU steps take milliseconds, and the first bf16 ones seconds
        flags += ["--passages", "4000", "--repeats", "5"] if script == "encode_throughput" else \
            ["--steps", "30", "--warmup", "5"]
    subprocess.run([sys.executable, str(HERE / f"{script}.py"), *flags], check=True)
    return json.loads((args.out / f"{script}_{precision}.json").read_text())


def machine_name(device: str) -> str:
    if torch.device(device).type == "cuda":
        return torch.cuda.get_device_name(torch.device(device))
    return platform.processor() or platform.machine()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="fewer passages and steps (a smoke check)")
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    rows = {(script, precision): run_benchmark(script, precision, args)
            for script in ("encode_throughput", "train_step") for precision in PRECISIONS}
    print(f"\n{'benchmark':20s} {'precision':9s} {'retrlab':>12s} {'sent.-transf.':>14s} {'ratio':>6s}")
    for (script, precision), result in rows.items():
        speeds = result.get("passages_per_second") or {k: result["args"]["batch_size"] / v
                                                     for k, v in result["seconds_per_step"].items()}
        unit = "passages/s" if script == "encode_throughput" else "queries/s"
        print(f"{script:20s} {precision:9s} {speeds['retrlab']:8.1f} {'':3s} {speeds['sentence-transformers']:8.1f} "
              f"{'':5s} {result['ratio']:6.2f}   ({unit})")
    native = native_bf16(args.device)
    atomic_write_json(args.out / "summary.json", {
        "machine": machine_name(args.device), "device": args.device, "native_bf16": native,
        "ratios": {f"{script}/{precision}": result["ratio"] for (script, precision), result in rows.items()}})
    print(f"written: {args.out / 'summary.json'}  (native bf16 on {args.device}: {native})")


if __name__ == "__main__":
    main()
