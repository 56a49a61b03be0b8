r"""No markdown cell states a measured number of this run as a literal: those are printed by code cells.

A notebook's prose is written once, its numbers change with the seed, the budget and the machine.
So the markdown of every notebook is scanned, sentence by sentence, for numbers that look like a
measurement:

* decimals (``0.34``, ``26.0``, ``2.4``: metrics, paper points, seconds),
* percentages (``60%``; not a confidence level, ``a 95% interval``),
* durations (``2.4 s``, ``~15 min``, ``10 h``) and speeds (``300 passages/s``),
* sizes of the data (``the 300-odd test queries``, ``~800 passages``, ``an 18-article split``; not a
  batch's ``32 passages``, which is a setting).

**The marker rule for quoted numbers.** A number quoted from a paper (or its official code) is
allowed when its *sentence* names the source: it contains ``et al.`` (a citation such as
"Xiong et al., 2021"), the word ``paper`` (``the paper``, ``papers``, ``paper's``), or the explicit
marker ``<!-- quoted -->`` (for a source that is neither, e.g. a model card).

**Settings are not claims.** Text inside LaTeX (``$…$``, ``$$…$$``), code spans, fenced blocks and
HTML comments is not scanned, and a number right after ``=``, ``<``, ``>``, ``≤``, ``≥``, inside
``{…}`` or after ``section`` is a setting or a reference (``τ = 0.05``, ``α ∈ {0.5, 2}``). So write a
hyperparameter as ``τ = 0.05`` or ``$10\%$``; anything else is a claim about this run, and belongs
in a code cell that prints it.

``PENDING`` lists notebooks whose prose is still being rewritten to this rule; their test is a
strict xfail, so it fails (and the entry must go) as soon as the notebook is clean.
"""
from __future__ import annotations

import json
import re
from pathlib import Path

import nbformat
import pytest

from retrlab.notebooks import find_notebooks

NOTEBOOKS = find_notebooks()
PENDING: set[str] = set()  # notebooks whose prose is still being fixed: a strict xfail until clean

UNSCANNED = re.compile(r"```.*?```|\$\$.*?\$\$|\$[^$\n]+\$|`[^`\n]+`|<!--.*?-->", re.DOTALL)
QUOTED = re.compile(r"\bet al\.|\bpapers?\b|\bpaper's\b|<!-- quoted -->", re.IGNORECASE)
# a setting or a reference, not a measurement: "τ = 0.05", "P < 0.1", "α ∈ {0.5, 2}", "section 1.4"
SETTING = re.compile(r"(?:[=<>≤≥]\s*~?|\{[^}]*|\b(?:section|§)\s*)$", re.IGNORECASE)
NUMBER = r"~?\d[\d,]*(?:\.\d+)?"
DATA = r"(?:quer(?:y|ies)|passages?|articles?)"
MEASURED = [
    ("decimal", re.compile(r"(?<![\w@.])\d+\.\d+\b")),
    ("percentage", re.compile(NUMBER + r"\s?%(?!\s*(?:confidence|interval))")),  # not "a 95% interval"
    ("duration", re.compile(r"(?<![\w@-])" + NUMBER + r"\s?(?:ms|s|sec|seconds?|min|minutes?|h|hours?)\b")),
    ("speed", re.compile(NUMBER + r"\s?\w+/s\b")),
    # the size of the data: "the 300-odd test queries", "~800 passages", "an 18-article split" (not a
    # batch's "32 passages", a setting)
    ("data count", re.compile(r"(?:~|\b(?:about|roughly|nearly|some|only|the) )\d[\d,]*(?:-odd)?\s"
                              r"(?:(?:test|dev|train|training)\s)?" + DATA + r"\b|\b\d+-(?:article|query|passage)\b")),
]
SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z*\[(])|\n\s*\n|\n(?=\s*(?:[-*]|\d+\.)\s)")


def sentences(markdown: str) -> list[str]:
    """The sentences of a markdown cell (list items and paragraphs apart), citations kept whole."""
    text = markdown.replace("et al. ", "et al.\u00a0")  # "Qu et al. 2021" does not end a sentence
    return [s.strip() for s in SENTENCE_END.split(text) if s.strip()]


def literal_claims(markdown: str) -> list[tuple[str, str, str]]:
    """``(kind, number, sentence)`` for each measurement-looking number stated outside a quotation."""
    claims = []
    for sentence in sentences(markdown):
        if QUOTED.search(sentence):
            continue
        prose = UNSCANNED.sub(" ", sentence)
        for kind, pattern in MEASURED:
            claims += [(kind, m.group(0), sentence) for m in pattern.finditer(prose)
                       if not SETTING.search(prose[:m.start()])]
    return claims


def notebook_claims(path: Path) -> list[str]:
    nb = nbformat.read(path, as_version=4)
    # fenced blocks and comments may span sentences: drop them from the whole cell first
    return [f"cell {i}: {kind} {number!r} in: {sentence[:160]!r}"
            for i, cell in enumerate(nb.cells) if cell.cell_type == "markdown"
            for kind, number, sentence in literal_claims(UNSCANNED.sub(lambda m: keep_inline(m.group(0)),
                                                                       cell.source))]


def keep_inline(span: str) -> str:
    """Multi-line spans (fences, display maths, comments) vanish; one-line spans stay for ``literal_claims``."""
    return span if "\n" not in span else " "


def test_a_measured_number_in_prose_is_flagged():
    claims = literal_claims("Recall@100 is close to 1: 60% of passages are longer than 128 tokens. "
                            "It takes 2.4 s per step on the 300-odd test queries (MRR@10 0.341), an 18-article split.")
    assert [(kind, number) for kind, number, _ in claims] == [
        ("percentage", "60%"), ("decimal", "2.4"), ("decimal", "0.341"), ("duration", "2.4 s"),
        ("data count", "the 300-odd test queries"), ("data count", "18-article")]


def test_quoted_code_and_maths_numbers_are_allowed():
    markdown = ("DPR's ablation (Karpukhin et al., 2020): 69.1 → 73.0 on NQ. The paper reports 0.340 in 10 h. "
                "We use $\\tau = 0.05$ and `MAX_LEN = 64`, k1 = 0.9, P < 0.1, α ∈ {0.5, 2}, a 95% interval "
                "(section 1.4). "
                "A model card says 58% <!-- quoted -->.\n\n```mermaid\nA[0.25 s] --> B\n```\n"
                "Section 2. Top-200 candidates, MRR@10 and 3 negatives per query, steps of 32 passages.")
    assert literal_claims(UNSCANNED.sub(lambda m: keep_inline(m.group(0)), markdown)) == []


def test_a_quotation_marker_covers_only_its_own_sentence():
    claims = literal_claims("The paper reports 0.340. Ours reaches 0.352.")
    assert [(number, sentence) for _, number, sentence in claims] == [("0.352", "Ours reaches 0.352.")]


@pytest.mark.parametrize("path", [
    pytest.param(p, marks=pytest.mark.xfail(strict=True, reason="prose still being fixed (issue 15)"))
    if p.stem in PENDING else p for p in NOTEBOOKS], ids=[p.stem for p in NOTEBOOKS])
def test_markdown_states_no_measured_number(path: Path) -> None:
    claims = notebook_claims(path)
    assert not claims, (f"{path.name} states numbers a run measures; print them from a code cell, or name "
                        "the paper in the sentence (see this file's docstring):\n" + "\n".join(claims))


NOTICE_MAX_LINES = 20  # a "What to notice" cell reads as prose plus numbers; computing belongs above it


def notice_cells(nb: nbformat.NotebookNode) -> list[str]:
    """The code cells right after a '## What to notice' heading, up to the next markdown cell."""
    cells, under_heading = [], False
    for cell in nb.cells:
        if cell.cell_type == "markdown":
            under_heading = cell.source.lstrip().startswith("## What to notice")
        elif under_heading:
            cells.append(cell.source)
    return cells


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_what_to_notice_is_short(path: Path) -> None:
    cells = notice_cells(nbformat.read(path, as_version=4))
    assert cells, f"{path.name} has no '## What to notice' heading followed by a code cell"
    lengths = [len(source.splitlines()) for source in cells]
    assert max(lengths) <= NOTICE_MAX_LINES, f"{path.name}: a What-to-notice cell of {max(lengths)} lines"


def test_notice_cells_are_found_under_their_heading_only():
    nb = nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_code_cell("x = 1"), nbformat.v4.new_markdown_cell("## What to notice (computed)"),
        nbformat.v4.new_code_cell("print(1)\nprint(2)"), nbformat.v4.new_markdown_cell("## Exercises"),
        nbformat.v4.new_code_cell("y = 2")])
    assert notice_cells(nb) == ["print(1)\nprint(2)"]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_a_notebook_is_committed_clean_with_an_id_on_every_cell(path: Path) -> None:
    """No outputs or execution counts in the repository, and every cell has its own id (nbformat 4.5
    requires one; a cell added by hand without it makes every reader warn)."""
    nb = json.loads(path.read_text())
    assert (nb["nbformat"], nb["nbformat_minor"]) >= (4, 5)
    ids = [cell.get("id") for cell in nb["cells"]]
    assert None not in ids, f"{path.name}: cells {[i for i, x in enumerate(ids) if x is None]} have no id"
    assert len(set(ids)) == len(ids), f"{path.name}: repeated cell ids"
    code = [cell for cell in nb["cells"] if cell["cell_type"] == "code"]
    assert all(not cell["outputs"] and cell["execution_count"] is None for cell in code), f"{path.name} has outputs"
