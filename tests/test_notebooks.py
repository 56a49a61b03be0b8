"""Every notebook runs top to bottom in smoke mode (RETRLAB_SMOKE=1) within its time budget."""
from __future__ import annotations

import os
import time
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

NOTEBOOKS = sorted((Path(__file__).parents[1] / "notebooks").glob("*.ipynb"))
SMOKE_BUDGET_S = 60


def execute(path: Path, smoke: bool = True, timeout: int = 600) -> tuple[nbformat.NotebookNode, float]:
    """Run a notebook in a fresh kernel (cwd = its folder); return it with outputs and the wall time."""
    nb = nbformat.read(path, as_version=4)
    os.environ["RETRLAB_SMOKE"] = "1" if smoke else "0"
    os.environ.setdefault("MPLBACKEND", "Agg")
    client = NotebookClient(nb, timeout=timeout, kernel_name="python3",
                            resources={"metadata": {"path": str(path.parent)}}, store_widget_state=True)
    started = time.perf_counter()
    client.execute()
    return nb, time.perf_counter() - started


def _warm_caches() -> None:
    """Build wiki-car once so that the first notebook's time is not the data build's."""
    from retrlab.data import load_wikicar

    load_wikicar()


@pytest.mark.notebook
@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_runs_in_smoke_mode(path: Path) -> None:
    _warm_caches()
    nb, seconds = execute(path)
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])
              if o.get("output_type") == "error"]
    assert not errors
    print(f"{path.name}: {seconds:.1f} s")
    assert seconds <= SMOKE_BUDGET_S * 1.5, f"{path.name} took {seconds:.0f} s in smoke mode"
