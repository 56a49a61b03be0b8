"""A real browser runs the SimANS notebook in JupyterLab, moves a slider and sees the widget change.

Headless Debian Chromium (/usr/bin/chromium) driven by Playwright; JupyterLab on 127.0.0.1 with a
random token; the notebook in smoke mode. Skips with the reason when chromium or playwright is
missing. A screenshot is saved under ``test-artifacts/browser/`` (gitignored).
"""
from __future__ import annotations

import re
import time
import uuid
from pathlib import Path

import pytest

from browser_support import CHROMIUM, CHROMIUM_ARGS, jupyterlab_server, missing_browser_tools

ROOT = Path(__file__).parents[1]
NOTEBOOK = ROOT / "notebooks" / "07_simans_ambiguous_negatives.ipynb"
ARTIFACTS = ROOT / "test-artifacts" / "browser"
RUN_TIMEOUT_MS = 900_000  # the whole smoke notebook (≤ 60 s on an idle CI box) plus a large margin

pytestmark = [pytest.mark.browser, pytest.mark.notebook, pytest.mark.skipif(missing_browser_tools() is not None,
                                                      reason=str(missing_browser_tools()))]


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with jupyterlab_server([NOTEBOOK], tmp_path_factory.mktemp("lab"), {"RETRLAB_SMOKE": "1"},
                           ARTIFACTS / "jupyterlab.log") as server:
        yield server


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        yield b
        b.close()


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 1400, "height": 1100})
    # hermetic: abort everything that is not loopback
    context.route(re.compile(r"^(?!https?://(127\.0\.0\.1|localhost)[:/]).*"), lambda route: route.abort())
    pg = context.new_page()
    pg.set_default_timeout(60_000)
    pg.js_errors = []
    pg.on("pageerror", lambda e: pg.js_errors.append(str(e)))
    yield pg
    context.close()


def open_and_run_all(page, lab: dict, name: str) -> None:
    workspace = uuid.uuid4().hex[:8]  # G4: a fresh workspace, never the previous test's kernel
    page.goto(f"{lab['base']}/lab/workspaces/{workspace}/tree/{name}?reset&token={lab['token']}")
    page.locator(".jp-Notebook").wait_for()
    from playwright.sync_api import expect

    expect(page.locator("#jp-main-statusbar")).to_contain_text(name)
    # G3: a *connected* idle kernel, then run all through the app's command registry
    expect(page.locator("#jp-main-statusbar").get_by_text(re.compile(r"\(ipykernel\) \| Idle$"))).to_be_visible(
        timeout=120_000)
    page.evaluate("""async () => {
        const w = jupyterapp.shell.currentWidget;
        await w.context.ready; await w.sessionContext.ready; await w.sessionContext.session.kernel.info;
        await jupyterapp.commands.execute('notebook:run-all-cells'); }""")


def test_simans_explorer_slider_in_jupyterlab(page, lab):
    started = time.perf_counter()
    try:
        check_explorer_slider(page, lab)
    except Exception:
        page.screenshot(path=str(ARTIFACTS / "failure.png"), full_page=True)
        (ARTIFACTS / "failure.html").write_text(page.content())
        raise
    print(f"browser test: {time.perf_counter() - started:.1f} s (open, run all, slider, screenshots)")
    assert not page.js_errors, page.js_errors


def check_explorer_slider(page, lab) -> None:
    from playwright.sync_api import expect

    open_and_run_all(page, lab, NOTEBOOK.name)
    # the last cell prints "exercise 2: ... rate <number>" once the whole notebook has run
    done = page.locator(".jp-OutputArea-output", has_text=re.compile(r"exercise 2: SimANS false-negative rate \d"))
    expect(done).to_be_visible(timeout=RUN_TIMEOUT_MS)
    assert page.locator(".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.error']").count() == 0
    explorer = page.locator(".simans-explorer")
    explorer.evaluate("e => e.scrollIntoView()")  # Lab's notebook scrolls in its own container
    # G11: the caption is printed into the same Output right after the image, so once the caption
    # shows the slider's value, the image above it is the one drawn for that value
    caption = explorer.locator(".simans-explorer-plot pre")
    readout = explorer.locator(".se-a .widget-readout")
    image = explorer.locator(".simans-explorer-plot img")
    expect(caption).to_contain_text(f"a={float(readout.text_content()):g} ")
    before_caption, before_src = caption.text_content(), image.get_attribute("src")

    handle = explorer.locator(".se-a .noUi-handle")
    handle.focus()
    for _ in range(5):
        handle.press("ArrowLeft")  # five slider steps down (step = 1 on a 0..500 slider)
    target = float(readout.text_content())  # the readout updates in the browser at once
    assert target < float(re.search(r"a=([0-9.]+)", before_caption).group(1))
    expect(caption).to_contain_text(f"a={target:g} ", timeout=120_000)  # the kernel redrew for it
    assert caption.text_content() != before_caption
    assert image.get_attribute("src") != before_src, "the explorer's figure did not change"
    explorer.evaluate("e => e.scrollIntoView()")
    page.screenshot(path=str(ARTIFACTS / "simans_notebook.png"))
    explorer.screenshot(path=str(ARTIFACTS / "simans_explorer.png"))
