"""Run notebooks headless — the engine behind ``retrlab notebooks`` and the notebook tests.

Each notebook runs in a fresh kernel with its own folder as the working directory, in smoke mode
(``RETRLAB_SMOKE=1``) or default mode; the executed copy can be written as HTML for reading
without Jupyter, and the wall time is recorded (the README's timing table comes from here).

Executed notebooks are cached under ``$RETRLAB_HOME/executed/``, keyed by the notebook's content
hash, the mode and retrlab's version: the notebook tests fill the cache (smoke mode) and
``retrlab site`` reuses it, so a notebook is executed again only when it (or the mode) changed.
"""
from __future__ import annotations

import hashlib
import os
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient

from retrlab.kernel_wait import sliced_waits

NOTEBOOK_DIR = Path(__file__).resolve().parents[1] / "notebooks"  # in a source checkout


def find_notebooks(folder: str | Path = NOTEBOOK_DIR, only: list[str] | None = None) -> list[Path]:
    """Notebooks of ``folder`` in order; ``only`` keeps those whose name starts with one of the prefixes."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"notebook folder {folder} not found (pass --dir with your checkout's notebooks/)")
    paths = sorted(folder.glob("[0-9]*.ipynb"))
    if only:
        paths = [p for p in paths if p.name.startswith(tuple(only))]
    if not paths:
        raise FileNotFoundError(f"no notebook in {folder} matches {only or 'NN_*.ipynb'}")
    return paths


def execute_notebook(path: str | Path, *, smoke: bool = True, timeout: int = 900) -> tuple[nbformat.NotebookNode, float]:
    """Execute a notebook top to bottom; return it with its outputs and the wall time in seconds."""
    path = Path(path)
    nb = nbformat.read(path, as_version=4)
    previous = os.environ.get("RETRLAB_SMOKE")
    os.environ["RETRLAB_SMOKE"] = "1" if smoke else "0"  # the kernel inherits this environment
    client = NotebookClient(nb, timeout=timeout, kernel_name="python3", store_widget_state=True,
                            resources={"metadata": {"path": str(path.parent)}})
    started = time.perf_counter()
    try:
        with sliced_waits():  # a cell's reply the event loop missed is read within a second, not at the timeout
            client.execute()
    finally:
        if previous is None:
            os.environ.pop("RETRLAB_SMOKE", None)
        else:
            os.environ["RETRLAB_SMOKE"] = previous
    return nb, time.perf_counter() - started


def execution_key(path: str | Path, *, smoke: bool) -> str:
    """What identifies one execution: the notebook's bytes, the mode, retrlab's version, and the settings
    that change what a notebook prints (``RETRLAB_SEEDS``, ``RETRLAB_PRECISION``)."""
    from retrlab import __version__

    settings = "|".join(os.environ.get(name, "") for name in ("RETRLAB_SEEDS", "RETRLAB_PRECISION"))
    digest = hashlib.sha256(Path(path).read_bytes())
    digest.update(f"|{'smoke' if smoke else 'default'}|{__version__}|{settings}".encode())
    return digest.hexdigest()[:16]


def executed_path(path: str | Path, *, smoke: bool) -> Path:
    """Where the executed copy of ``path`` is cached (``$RETRLAB_HOME/executed/``)."""
    from retrlab.cache import home

    path = Path(path)
    mode = "smoke" if smoke else "default"
    return home() / "executed" / f"{path.stem}-{mode}-{execution_key(path, smoke=smoke)}.ipynb"


def store_executed(path: str | Path, nb: nbformat.NotebookNode, seconds: float, *, smoke: bool) -> Path:
    """Cache an executed notebook (atomically, sealed) with its wall time in ``metadata.retrlab``."""
    from retrlab.cache import atomic_write_text, seal

    nb.metadata["retrlab"] = {"mode": "smoke" if smoke else "default", "wall_seconds": round(seconds, 1)}
    return seal(atomic_write_text(executed_path(path, smoke=smoke), nbformat.writes(nb)))


def load_executed(path: str | Path, *, smoke: bool) -> tuple[nbformat.NotebookNode, float] | None:
    """The cached execution of this exact notebook in this mode, or None (absent or damaged)."""
    from retrlab.cache import intact

    target = executed_path(path, smoke=smoke)
    if not intact(target):
        return None
    nb = nbformat.read(target, as_version=4)
    return nb, float(nb.metadata["retrlab"]["wall_seconds"])


def execute_cached(path: str | Path, *, smoke: bool = True, timeout: int = 900,
                   rerun: bool = False) -> tuple[nbformat.NotebookNode, float, bool]:
    """The cached execution if there is one (unless ``rerun``), else execute and cache it.

    Returns (notebook with outputs, wall time of the execution in seconds, reused from the cache?).
    """
    cached = None if rerun else load_executed(path, smoke=smoke)
    if cached is not None:
        return (*cached, True)
    nb, seconds = execute_notebook(path, smoke=smoke, timeout=timeout)
    store_executed(path, nb, seconds, smoke=smoke)
    return nb, seconds, False


def write_html(nb: nbformat.NotebookNode, target: str | Path) -> Path:
    from nbconvert import HTMLExporter

    from retrlab.cache import atomic_write_text

    html, _ = HTMLExporter().from_notebook_node(nb)
    return atomic_write_text(target, html)


def timing_table(rows: list[tuple[str, str, float]]) -> str:
    """A markdown table of (notebook, mode, seconds)."""
    lines = ["| notebook | mode | wall time |", "| --- | --- | ---: |"]
    lines += [f"| `{name}` | {mode} | {seconds:.0f} s |" for name, mode, seconds in rows]
    return "\n".join(lines)
