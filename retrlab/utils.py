"""Small shared helpers: seeding, device choice, the smoke-mode and seed-count switches, showing source code."""
from __future__ import annotations

import inspect
import os
import random

import numpy as np
import torch


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch so that the same seed gives the same numbers."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def default_device() -> torch.device:
    """CUDA when a GPU is present (and not disabled with ``RETRLAB_DEVICE=cpu``), else CPU."""
    wanted = os.environ.get("RETRLAB_DEVICE")
    if wanted:
        return torch.device(wanted)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def smoke_mode() -> bool:
    """True when ``RETRLAB_SMOKE=1``: notebooks shrink their budget to run in under a minute."""
    return os.environ.get("RETRLAB_SMOKE", "0") not in ("", "0", "false", "False")


def seed_count(default: int) -> int:
    """How many seeds a notebook trains its main comparison with: ``RETRLAB_SEEDS`` when set, else ``default``.

    One seed roughly halves the time of a notebook whose comparison is the lesson (a CPU without native
    bf16 needs that to stay near five minutes, docs/TIMINGS.md); its verdicts then say "(one seed)",
    since no spread between seeds was measured. More seeds narrow the intervals and cost one more run
    of each variant per seed.
    """
    raw = os.environ.get("RETRLAB_SEEDS", "").strip()
    if not raw:
        return default
    if not (raw.isascii() and raw.isdigit()) or int(raw) < 1:
        raise ValueError(f"RETRLAB_SEEDS must be a whole number of seeds, 1 or more; got {raw!r}")
    return int(raw)


def extra_seeds(default: int = 3, first: int = 0) -> tuple[int, ...]:
    """The seeds after ``first`` that repeat a notebook's main comparison: (1, 2) for three seeds in all."""
    return tuple(range(first + 1, first + seed_count(default)))


def show_source(obj) -> None:
    """Display a function's or class's source in a notebook (plain print outside Jupyter)."""
    code = inspect.getsource(obj)
    try:
        from IPython.display import Markdown, display

        display(Markdown(f"```python\n{code}\n```"))
    except ImportError:  # pragma: no cover - IPython ships with jupyterlab
        print(code)
