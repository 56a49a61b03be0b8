"""One precision policy for every forward pass: ``RETRLAB_PRECISION=auto|fp32|bf16``.

bfloat16 keeps float32's range but only 8 bits of mantissa: a cosine near 0.7 is stored to about
±0.002. Encoding does not mind (embeddings stay within cosine 0.9999 of float32), and on hardware
with native bf16 (CUDA GPUs of compute capability 8+, CPUs with AVX512-BF16 or AMX) it is 2-3x
faster. Training with hard negatives does mind: the gap between a positive and a top-ranked
negative is often a few hundredths of cosine, and ``s / τ`` with τ = 0.05 turns the rounding of a
bf16 score into a visible change of the loss. So the policy is:

* ``fp32`` — everything in float32;
* ``bf16`` — encoder forward passes under ``torch.autocast(dtype=torch.bfloat16)``, but scores,
  losses and optimiser state always in float32 (embeddings are cast up before any dot product);
* ``auto`` (the default) — ``bf16`` where the hardware runs it natively *and* it was measured to
  pay, else ``fp32`` (emulated bf16, e.g. on a CPU with AVX2 only, is slower than float32):
  - *encoding* (a corpus, a pool, an evaluation): bf16 on a CUDA GPU or a CPU with native bf16;
  - *training*: bf16 on a CPU with native bf16 (AVX512-BF16 or AMX), float32 on CUDA. bf16
    training reached float32's test MRR@10 within the seed spread for in-batch, top-1 and SimANS
    negatives, 3 seeds each, on an H200 and on a 2-core EPYC with AVX512-BF16 (docs/RESULTS.md
    5.2-5.3), and on that CPU a step is 1.5x faster; on the H200 it was 11-24% *slower* at MiniLM's
    batch sizes (a step there is bound by kernel launches and tokenization), so CUDA trains in
    float32 unless ``bf16`` is asked for.
  ``benchmarks/bf16_training.py`` repeats the check on any machine.

One function applies it, ``retrlab.encoders.hidden_states``, called by ``BiEncoder._embed`` and
``CrossEncoder.logits`` (segment-cosine head): the transformer runs under ``autocast(device,
training)`` and its output is cast to float32 before pooling, so the pooled vectors, every score,
logit, loss and optimiser state are float32. Pretraining objectives that call the transformer
directly (MLM, Condenser, coCondenser, Contriever, SEED-Encoder, RetroMAE, PROP) stay float32
(docs/RESULTS.md 5.3). For the cross-encoder (AR2's ranker, RocketQA's denoiser) bf16 training
re-ranked as well as float32 (wiki-car dev MRR@10 0.591 both, 3 seeds, 2.1x faster per step on the
AVX512-BF16 CPU; ``benchmarks/bf16_cross_encoder.py``, docs/RESULTS.md 5.5). Its ``"classifier"``
head stays float32: that logit comes out of a linear layer inside the model, which autocast would
run in bf16.
Mixed precision training: Micikevicius et al. 2018, "Mixed Precision Training".
"""
from __future__ import annotations

import contextlib
import os
from functools import cache
from pathlib import Path

import torch

PRECISIONS = ("auto", "fp32", "bf16")


def requested_precision() -> str:
    """The policy asked for by ``RETRLAB_PRECISION`` (default ``auto``); a bad value is named."""
    value = os.environ.get("RETRLAB_PRECISION", "auto").strip().lower() or "auto"
    if value not in PRECISIONS:
        raise ValueError(f"RETRLAB_PRECISION must be one of {PRECISIONS}, got {value!r}")
    return value


@cache
def cpu_has_native_bf16(cpuinfo: str = "/proc/cpuinfo") -> bool:
    """True when the CPU advertises bf16 arithmetic (AVX512-BF16 or AMX-BF16)."""
    try:
        flags = Path(cpuinfo).read_text(errors="replace").split()
    except OSError:  # not Linux: trust oneDNN's own check
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    return "avx512_bf16" in flags or "amx_bf16" in flags


def native_bf16(device: torch.device | str) -> bool:
    """Does ``device`` run bf16 matrix products natively?"""
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    return device.type == "cpu" and cpu_has_native_bf16()


def forward_precision(device: torch.device | str, training: bool = False) -> str:
    """``"bf16"`` or ``"fp32"``: what an encoder forward pass on ``device`` runs in under the policy."""
    wanted = requested_precision()
    if wanted == "auto":
        device = torch.device(device)
        pays = native_bf16(device) and (not training or device.type == "cpu")  # see the module docstring
        return "bf16" if pays else "fp32"
    return wanted


def autocast(device: torch.device | str, training: bool = False):
    """The context for an encoder forward pass: bf16 autocast under the policy, else nothing."""
    device = torch.device(device)
    if forward_precision(device, training) == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=torch.bfloat16)
