"""RETRLAB_SEEDS: how many seeds a notebook trains its main comparison with (retrlab.utils.seed_count)."""
from __future__ import annotations

from pathlib import Path

import pytest

from retrlab.notebooks import NOTEBOOK_DIR, execute_notebook
from retrlab.utils import extra_seeds, seed_count


def test_the_notebook_default_holds_when_unset(monkeypatch):
    monkeypatch.delenv("RETRLAB_SEEDS", raising=False)
    assert seed_count(3) == 3 and extra_seeds() == (1, 2) and extra_seeds(2) == (1,) and extra_seeds(1) == ()
    monkeypatch.setenv("RETRLAB_SEEDS", " ")
    assert extra_seeds() == (1, 2)


@pytest.mark.parametrize("value, seeds", [("1", ()), ("2", (1,)), ("5", (1, 2, 3, 4)), (" 4 ", (1, 2, 3))])
def test_the_variable_overrides_every_default(monkeypatch, value, seeds):
    monkeypatch.setenv("RETRLAB_SEEDS", value)
    assert extra_seeds() == seeds and extra_seeds(2) == seeds and extra_seeds(3, first=10) == tuple(s + 10 for s in seeds)


@pytest.mark.parametrize("value", ["0", "-1", "two", "2.5", "1e3", "²"])
def test_a_bad_count_is_named(monkeypatch, value):
    monkeypatch.setenv("RETRLAB_SEEDS", value)
    with pytest.raises(ValueError, match=rf"RETRLAB_SEEDS must be a whole number of seeds, 1 or more; got '{value}'"):
        extra_seeds()


def test_every_seeded_notebook_reads_the_count():
    """The notebooks whose main comparison trains several seeds take the count from one place."""
    sources = {p.stem[:2]: p.read_text() for p in Path(NOTEBOOK_DIR).glob("*.ipynb")}
    seeded = {k for k, text in sources.items() if "extra_seeds(" in text}
    assert seeded == {"01", "02", "03", "04", "05", "06", "07", "13", "14", "15"}
    assert not any("EXTRA_SEEDS = (" in text for text in sources.values())


@pytest.mark.notebook
def test_one_seed_runs_a_notebook_and_says_so(monkeypatch):
    """RETRLAB_SEEDS=1 (the kernel inherits it): no extra runs, and the verdicts say the spread is unmeasured."""
    monkeypatch.setenv("RETRLAB_SEEDS", "1")
    nb, _ = execute_notebook(Path(NOTEBOOK_DIR) / "15_why_hard_negatives_hurt.ipynb", smoke=True, timeout=240)
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])]
    assert not [o for o in outputs if o.get("output_type") == "error"]
    text = "".join(o.get("text", "") for o in outputs if o.get("output_type") == "stream")
    assert "over seeds (0,)" in text and "seeds (0, 1" not in text
    assert "top-1 vs in-batch over seeds (0,):" in text and "(one seed)" in text
