"""Every notebook runs top to bottom in smoke mode (RETRLAB_SMOKE=1) within its time budget."""
from __future__ import annotations

from pathlib import Path

import pytest

from retrlab.notebooks import execute_notebook, find_notebooks

NOTEBOOKS = find_notebooks()
SMOKE_BUDGET_S = 60
SLACK = 1.5  # CI machines are shared; a notebook over 90 s fails, one over 60 s is reported


@pytest.fixture(scope="module", autouse=True)
def built_data():
    """Build wiki-car once, so that the first notebook's time is not the data build's."""
    from retrlab.data import load_wikicar

    load_wikicar()


@pytest.mark.notebook
@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_runs_in_smoke_mode(path: Path) -> None:
    nb, seconds = execute_notebook(path, smoke=True)
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])
              if o.get("output_type") == "error"]
    assert not errors
    print(f"{path.name}: {seconds:.1f} s")
    assert seconds <= SMOKE_BUDGET_S * SLACK, f"{path.name} took {seconds:.0f} s in smoke mode"
