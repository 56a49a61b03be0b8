"""A real browser runs the SimANS notebook in JupyterLab, moves controls and sees the widgets change.

Headless Debian Chromium (/usr/bin/chromium) driven by Playwright; JupyterLab on 127.0.0.1 with a
random token; the notebook in smoke mode. In 07: the explorer's a slider, the distribution view's
zones (moving b) and its counts/density toggle. In a small notebook written here (the hand pool of
``test_simans``): the explorer's cross-encoder row, whose counts must equal thresholding by hand.
Skips with the reason when chromium or playwright is missing. Screenshots are saved under
``test-artifacts/browser/`` (gitignored).
"""
from __future__ import annotations

import re
import time
import uuid
from pathlib import Path

import nbformat
import numpy as np
import pytest

from browser_support import CHROMIUM, CHROMIUM_ARGS, jupyterlab_server, missing_browser_tools

ROOT = Path(__file__).parents[1]
NOTEBOOK = ROOT / "notebooks" / "07_simans_ambiguous_negatives.ipynb"
ARTIFACTS = ROOT / "test-artifacts" / "browser"
RUN_TIMEOUT_MS = 900_000  # the whole smoke notebook (≤ 60 s on an idle CI box) plus a large margin
CE_NOTEBOOK = "cross_encoder_row.ipynb"
CE_PROBS = {"q0": [0.95, 0.2, 0.7, 0.1, 0.05], "q1": [0.1, 0.1, 0.1]}  # q0's hidden positives: ranks 1 and 3

pytestmark = [pytest.mark.browser, pytest.mark.notebook, pytest.mark.skipif(missing_browser_tools() is not None,
                                                      reason=str(missing_browser_tools()))]


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    notebooks = [NOTEBOOK, write_cross_encoder_notebook(tmp_path_factory.mktemp("nb") / CE_NOTEBOOK)]
    with jupyterlab_server(notebooks, tmp_path_factory.mktemp("lab"), {"RETRLAB_SMOKE": "1"},
                           ARTIFACTS / "jupyterlab.log") as server:
        yield server


def write_cross_encoder_notebook(path: Path) -> Path:
    """An explorer over the hand pool with cross-encoder probabilities, the kernel importing from tests/."""
    # the kernel runs in the server's copy folder: the repository root goes on the path so that
    # ``tests`` imports as it does under pytest (never conftest, which patches sockets)
    source = f"""import sys
sys.path.insert(0, {str(ROOT)!r})
import numpy as np
from tests.helpers import make_toy_data
from tests.test_simans import hand_pool
from retrlab.viz.explore import Settings
from retrlab.viz.widgets import SimilarityExplorer

probs = {{q: np.array(p) for q, p in {CE_PROBS!r}.items()}}
explorer = SimilarityExplorer(hand_pool(), make_toy_data(), settings=Settings(n=2, depth=5), ce_probabilities=probs)
explorer"""
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(source)])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}  # G6
    nbformat.write(nb, path)
    return path


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


def run_checked(page, check, name: str) -> None:
    started = time.perf_counter()
    try:
        check()
    except Exception:
        page.screenshot(path=str(ARTIFACTS / f"failure-{name}.png"), full_page=True)
        (ARTIFACTS / f"failure-{name}.html").write_text(page.content())
        raise
    print(f"browser test {name}: {time.perf_counter() - started:.1f} s")
    assert not page.js_errors, page.js_errors


def test_simans_explorer_slider_in_jupyterlab(page, lab):
    run_checked(page, lambda: check_explorer_slider(page, lab), "simans")


def test_cross_encoder_row_in_jupyterlab(page, lab):
    run_checked(page, lambda: check_cross_encoder_row(page, lab), "cross-encoder")


def press(handle, key: str, times: int = 1) -> None:
    """Keyboard presses on a slider handle (a Playwright locator matching exactly one element)."""
    handle.focus()
    for _ in range(times):
        handle.press(key)


def check_cross_encoder_row(page, lab) -> None:
    from playwright.sync_api import expect

    open_and_run_all(page, lab, CE_NOTEBOOK)
    explorer = page.locator(".simans-explorer")
    caption = explorer.locator(".simans-explorer-plot pre")
    p = np.array(CE_PROBS["q0"])
    hidden = np.array([True, False, True, False, False])
    for key, threshold in [(None, 0.5), ("End", 1.0), ("Home", 0.0)]:
        if key:
            press(explorer.locator(".se-threshold .noUi-handle"), key)
        dropped = p >= threshold  # by hand: RocketQA keeps a negative only if p < threshold
        expect(caption).to_contain_text(
            f"CE veto p >= {threshold:.3f}: drops {dropped.sum()} of 5, catches {(dropped & hidden).sum()} of 2 "
            "hidden positives", timeout=60_000)
        explorer.screenshot(path=str(ARTIFACTS / f"cross_encoder_row_t{threshold:.1f}.png"))


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
    check_zones_and_toggle(page)


def check_zones_and_toggle(page) -> None:
    """The distribution view (the first in 07): zones follow b; the toggle switches counts/density."""
    from playwright.sync_api import expect

    view = page.locator(".distribution-view").first  # 07 shows two: the demo and before/after training
    view.evaluate("e => e.scrollIntoView()")
    caption, zones = view.locator(".distribution-view-plot pre"), view.locator(".dv-zones")
    image = view.locator(".distribution-view-plot img")
    expect(caption).to_contain_text("| density |")  # Run All left the demo widget in its demo state
    band_before, src_before = zones.locator("div").first.text_content(), image.get_attribute("src")
    press(view.locator(".dv-b .noUi-handle"), "ArrowLeft", 5)  # b down by 0.05
    b = float(view.locator(".dv-b .widget-readout").text_content())
    expect(caption).to_contain_text(f"b={b:+.2f} ", timeout=120_000)
    assert zones.locator("div").first.text_content() != band_before, "the zones did not follow b"
    for zone in ("too easy", "ambiguous", "too hard"):  # the table shows what the caption says
        cells = zones.locator(f".zone-{zone.replace(' ', '-')}")
        shown = f"{zone} {cells.nth(0).text_content()}/{cells.nth(1).text_content()}"
        assert shown in caption.text_content(), (shown, caption.text_content())
    view.screenshot(path=str(ARTIFACTS / "distribution_zones_density.png"))
    view.locator(".dv-histogram button", has_text="counts").click()
    expect(caption).to_contain_text("| counts |", timeout=120_000)
    assert image.get_attribute("src") not in (src_before, None), "the histogram did not change"
    view.screenshot(path=str(ARTIFACTS / "distribution_zones_counts.png"))
