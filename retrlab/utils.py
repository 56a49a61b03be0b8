"""Small shared helpers: seeding, device choice, the smoke-mode switch, showing source code."""
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


def show_source(obj) -> None:
    """Display a function's or class's source in a notebook (plain print outside Jupyter)."""
    code = inspect.getsource(obj)
    try:
        from IPython.display import Markdown, display

        display(Markdown(f"```python\n{code}\n```"))
    except ImportError:  # pragma: no cover - IPython ships with jupyterlab
        print(code)
