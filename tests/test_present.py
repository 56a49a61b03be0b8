"""``retrlab present``: the Voila command, the dashboard notebooks, the dashboards in a real browser.

The browser tests (marked ``browser`` and ``notebook``) build the smoke-mode data, start Voila as
``retrlab present`` does, wait for the preheated kernels and open the page (timed). SimANS: move the
``a`` slider and see the figure and the false-negative caption change. RocketQA: move the threshold
slider and see the veto caption change. Both check that no code is shown and that no request
failed. Screenshots go to ``test-artifacts/browser/dashboard/``.
"""
from __future__ import annotations

import re
import secrets
import time
from contextlib import contextmanager
from pathlib import Path

import nbformat
import numpy as np
import pytest
from jupyter_client.channels import AsyncZMQSocketChannel

import retrlab.data
import retrlab.rerank
from browser_support import chromium_page, free_port, missing_browser_tools, voila_server, watched
from retrlab import artifacts
from retrlab.artifacts import Budget
from retrlab.cache import intact
from retrlab.cli import main
from retrlab.dashboards import voila_main
from retrlab.kernel_wait import _unsliced_get_msg, get_msg_in_slices
from retrlab.dashboards import (DASHBOARDS, LESSON_SMOKE_SPLITS, POOL_SPECS, PoolSpec, dashboard_path,
                                pool_path, prepare, rocketqa_widgets, veto_probabilities)
from retrlab.encoders import CrossEncoder
from retrlab.present import POOL_SIZE, voila_command, voila_env
from tests.helpers import make_toy_data
from tests.test_experiments import TINY_CE, use_tiny_models

ARTIFACTS = Path(__file__).parents[1] / "test-artifacts" / "browser" / "dashboard"
WARM_OPEN_BUDGET_S = 20
SLACK = 1.5  # shared CI machines, as in tests/test_notebooks.py


def test_voila_listens_on_loopback_without_code():
    command = voila_command("simans", 8123, "abc")
    assert command[1:4] == ["-m", "retrlab.dashboards.voila_main", str(dashboard_path("simans"))]
    for flag in ("--Voila.ip=127.0.0.1", "--port=8123", "--token=abc", "--strip_sources=True",
                 "--template=retrlab", "--preheat_kernel=True", f"--pool_size={POOL_SIZE}"):
        assert flag in command


def test_present_runs_voila_with_the_sliced_wait(monkeypatch):
    calls = []
    monkeypatch.setattr("voila.app.main", lambda: calls.append(AsyncZMQSocketChannel.get_msg))
    monkeypatch.setattr(AsyncZMQSocketChannel, "get_msg", _unsliced_get_msg)
    monkeypatch.setattr("sys.argv", ["voila_main.py", "x.ipynb"])
    voila_main.main()
    assert calls == [get_msg_in_slices]


def test_the_template_is_on_voilas_path(monkeypatch):
    monkeypatch.setenv("JUPYTER_PATH", "/somewhere/else")
    env = voila_env(smoke=True)
    first, rest = env["JUPYTER_PATH"].split(":", 1)
    assert rest == "/somewhere/else" and env["RETRLAB_SMOKE"] == "1"
    template = Path(first) / "voila" / "templates" / "retrlab"
    assert (template / "index.html.j2").is_file() and (template / "conf.json").is_file()
    assert not re.search(r"(href|src)=.https?://", (template / "index.html.j2").read_text())


def test_every_dashboard_is_a_notebook_without_outputs():
    for view in DASHBOARDS:
        nb = nbformat.read(dashboard_path(view), as_version=4)
        assert nb.metadata["kernelspec"]["name"] == "python3"
        assert all(not c.get("outputs") for c in nb.cells if c.cell_type == "code")


def test_an_unknown_view_is_refused_with_the_choices(capsys):
    assert main(["present", "leaderboard-3d"]) == 2
    expected = "no dashboard named 'leaderboard-3d'; choose one of ['rocketqa', 'simans']"
    assert expected in capsys.readouterr().err


def test_rocketqa_prepare_scores_the_top_10_once_and_caches_it(tmp_path, monkeypatch):
    """Toy data, tiny models: prepare builds pool, cross-encoder and probabilities; a reload reads them."""
    use_tiny_models(monkeypatch, tmp_path)
    monkeypatch.setattr(retrlab.data, "load_wikicar", lambda seed: make_toy_data())
    monkeypatch.setitem(POOL_SPECS, True, PoolSpec(100, 9, 32))
    monkeypatch.setitem(artifacts.WARMUP_BUDGET, True, Budget(1, 2, 32))
    monkeypatch.setitem(artifacts.CE_BUDGET, True, TINY_CE)
    prepare("rocketqa", smoke=True)
    data, pool, probabilities = veto_probabilities(smoke=True)
    # every toy training query has a hidden positive (a second passage of its section) in its top 10
    assert list(probabilities) == data.qids("train") == ["q0", "q1", "q2", "q3"]
    ce_folder = artifacts.cross_encoder_folder(make_toy_data().subset(LESSON_SMOKE_SPLITS), smoke=True)
    ce = CrossEncoder.from_pretrained(ce_folder)
    top = [pool.candidates(q)[0][:10] for q in probabilities]
    assert [len(t) for t in top] == [8, 8, 8, 8]  # 9 train passages minus the labelled positive
    expected = retrlab.rerank.score_candidates(ce, data, list(probabilities), top, progress=False)
    for q, p in zip(probabilities, expected):
        np.testing.assert_array_equal(probabilities[q], p.astype(np.float64))
    cached = pool_path(data, smoke=True).with_name(f"minilm-zeroshot-{artifacts.fingerprint(data)}-len32-d9"
                                                   f"-top10-q12-{ce_folder.name}.json")
    assert intact(cached)

    def no_scoring(*args, **kwargs):
        raise AssertionError("the cached probabilities were scored again")

    monkeypatch.setattr(retrlab.rerank, "score_candidates", no_scoring)
    _, _, again = veto_probabilities(smoke=True)
    assert {q: p.tolist() for q, p in again.items()} == {q: p.tolist() for q, p in probabilities.items()}
    explorer = rocketqa_widgets(smoke=True)
    assert explorer.qid == "q0" and explorer.threshold.value == 0.1 and explorer.veto["scored"] == 8
    assert "CE veto p >= 0.100: drops" in explorer.caption


def wait_for_line(log: Path, pattern: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not re.search(pattern, log.read_text() if log.exists() else ""):
        if time.monotonic() > deadline:
            raise TimeoutError(f"{pattern!r} not in {log} after {timeout} s")
        time.sleep(0.5)  # polling a log file, not synchronising with the page


def open_dashboard(page, url: str, timeout_ms: int, caption_text: str):
    """Open the dashboard; return (explorer, its caption) once the caption shows ``caption_text``."""
    from playwright.sync_api import expect

    page.goto(url, timeout=timeout_ms)
    explorer = page.locator(".simans-explorer")
    caption = explorer.locator(".simans-explorer-plot pre")
    expect(caption).to_contain_text(caption_text, timeout=timeout_ms)
    return explorer, caption


def browser_test(test):
    """Marked ``notebook`` and ``browser`` (slow), rerun once, skipped where Chromium or Playwright is missing."""
    missing = missing_browser_tools()
    skip = pytest.mark.skipif(missing is not None, reason=str(missing))
    # one rerun, a fresh server, for a slow shared machine. The stalled pages seen until 2026-11-30 (a
    # kernel's reply never read: 15 of 91 runs) were a missed zmq wake-up, fixed in
    # retrlab.dashboards.voila_main and tested above; 0 of 24 runs stalled after the fix
    rerun = pytest.mark.flaky(reruns=1)
    return pytest.mark.notebook(pytest.mark.browser(rerun(skip(test))))


@contextmanager
def presented(view: str, caption_text: str, code_name: str):
    """``retrlab present VIEW --smoke`` with a browser: yields (page, explorer, caption) of a warm page.

    Voila starts with its preheated kernels; a first visitor's page may wait for a kernel still
    executing the notebook, so a second visitor (a tab of its own, the other preheated kernel) is
    the one timed against the budget and handed to the test. No code may be shown on it (the call
    ``code_name`` included), and no request of either page may fail.
    """
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    prepare(view, smoke=True)  # what `retrlab present VIEW --smoke` does before starting Voila
    token, log = secrets.token_hex(16), ARTIFACTS / f"{view}_voila.log"
    started = time.perf_counter()
    with voila_server(voila_command(view, free_port(), token), voila_env(smoke=True), log,
                      f"/voila/static/voila.js?token={token}") as base, chromium_page() as page:
        wait_for_line(log, rf"Kernel pool of {view}.ipynb is filled with {POOL_SIZE} kernel", timeout=300)
        ready = time.perf_counter()
        first = time.perf_counter()
        open_dashboard(page, f"{base}/?token={token}", 300_000, caption_text)
        first = time.perf_counter() - first
        first_page, page = page, watched(page.context.new_page())
        warm = time.perf_counter()
        explorer, caption = open_dashboard(page, f"{base}/?token={token}", 120_000, caption_text)
        warm = time.perf_counter() - warm
        print(f"{view} dashboard: Voila up after {ready - started:.1f} s; first page {first:.1f} s, "
              f"second (warm) {warm:.1f} s")
        assert warm <= WARM_OPEN_BUDGET_S * SLACK, f"the dashboard took {warm:.0f} s to open warm"
        assert page.locator(".jp-CodeCell .jp-InputArea, .jp-CodeMirrorEditor, .cm-editor, .highlight").count() == 0, \
            "code is shown"
        assert code_name not in page.locator("body").inner_text()
        page.screenshot(path=str(ARTIFACTS / f"{view}_before.png"))
        yield page, explorer, caption
        for p in (first_page, page):
            assert p.failed_requests == [], p.failed_requests
            assert p.js_errors == [], p.js_errors
    print(f"{view} dashboard browser test: {time.perf_counter() - started:.1f} s; screenshots in {ARTIFACTS}")


@browser_test
def test_simans_dashboard_slider_changes_figure_and_caption():
    from playwright.sync_api import expect

    with presented("simans", "false negatives picked", "simans_widgets(") as (page, explorer, caption):
        image = explorer.locator(".simans-explorer-plot img")
        before_caption, before_src = caption.text_content(), image.get_attribute("src")
        readout = explorer.locator(".se-a .widget-readout")
        handle = explorer.locator(".se-a .noUi-handle")
        handle.focus()
        for _ in range(3):
            handle.press("PageDown")  # a down by 3 × 5 steps
        target = float(readout.text_content())
        assert target < float(re.search(r"a=([0-9.]+)", before_caption).group(1))
        expect(caption).to_contain_text(f"a={target:g} ", timeout=60_000)  # the kernel redrew for it (G11)
        after_caption = caption.text_content()
        assert after_caption != before_caption
        assert image.get_attribute("src") != before_src, "the figure did not change"
        page.screenshot(path=str(ARTIFACTS / "simans_after.png"))
        explorer.screenshot(path=str(ARTIFACTS / "simans_explorer_after.png"))
    print(f"  before: {before_caption}\n  after:  {after_caption}")


@browser_test
def test_rocketqa_dashboard_threshold_slider_changes_the_veto():
    from playwright.sync_api import expect

    with presented("rocketqa", "CE veto p >= 0.100", "rocketqa_widgets(") as (page, explorer, caption):
        before_caption = caption.text_content()
        handle = explorer.locator(".se-threshold .noUi-handle")
        handle.focus()
        handle.press("End")  # the threshold to 1: the veto drops (nearly) nothing
        assert explorer.locator(".se-threshold .widget-readout").text_content() == "1.000"
        expect(caption).to_contain_text("CE veto p >= 1.000", timeout=60_000)  # the kernel redrew (G11)
        after_caption = caption.text_content()
        drops = [int(re.search(r"CE veto p >= [0-9.]+: drops (\d+)", c).group(1))
                 for c in (before_caption, after_caption)]
        assert drops[1] < drops[0], (before_caption, after_caption)
        page.screenshot(path=str(ARTIFACTS / "rocketqa_after.png"))
    print(f"  before: {before_caption}\n  after:  {after_caption}")
