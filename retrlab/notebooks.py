"""Run notebooks headless — the engine behind ``retrlab notebooks`` and the notebook tests.

Each notebook runs in a fresh kernel with its own folder as the working directory, in smoke mode
(``RETRLAB_SMOKE=1``) or default mode; the executed copy can be written as HTML for reading
without Jupyter, and the wall time is recorded (the README's timing table comes from here).
"""
from __future__ import annotations

import os
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient

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
        client.execute()
    finally:
        if previous is None:
            os.environ.pop("RETRLAB_SMOKE", None)
        else:
            os.environ["RETRLAB_SMOKE"] = previous
    return nb, time.perf_counter() - started


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
