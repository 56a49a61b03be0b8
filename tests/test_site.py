"""The rendered site (``retrlab site``): execution cache, pages, index, offline assets, and a real browser.

Unit tests use tiny notebooks written here (a fresh kernel each, no retrlab import). The smoke site
(marked ``notebook``) renders every notebook from the execution cache that tests/test_notebooks.py
fills, so in a full run nothing is executed twice; run alone, it executes what is missing. The browser
test (marked ``browser``) opens the index, follows the link to the SimANS page and checks the widget
figure, a matplotlib image and that no request failed; screenshots go to ``test-artifacts/browser/site/``.
"""
from __future__ import annotations

import base64
import hashlib
import io
import json
import re
import tarfile
import time
from pathlib import Path

import nbformat
import pytest

from browser_support import chromium_page, missing_browser_tools, static_server
from retrlab import site
from retrlab.cli import main
from retrlab.notebooks import NOTEBOOK_DIR, execute_cached, execution_key, executed_path, find_notebooks

ARTIFACTS = Path(__file__).parents[1] / "test-artifacts" / "browser" / "site"
SIMANS = "07_simans_ambiguous_negatives"


def write_notebook(path: Path, *cells: str, markdown: str = "# 99 · a tiny lesson") -> Path:
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell(markdown),
                                         *[nbformat.v4.new_code_cell(c) for c in cells]])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, path)
    return path


# --- the execution cache ---------------------------------------------------------------------------
def test_execution_key_follows_content_and_mode(tmp_path):
    path = write_notebook(tmp_path / "01_a.ipynb", "print(1)")
    smoke, default = execution_key(path, smoke=True), execution_key(path, smoke=False)
    assert smoke == execution_key(path, smoke=True) and smoke != default
    write_notebook(path, "print(2)")
    assert execution_key(path, smoke=True) != smoke


def test_execution_key_follows_the_seed_count_and_precision(tmp_path, monkeypatch):
    path = write_notebook(tmp_path / "01_a.ipynb", "print(1)")
    monkeypatch.delenv("RETRLAB_SEEDS", raising=False)
    monkeypatch.delenv("RETRLAB_PRECISION", raising=False)
    plain = execution_key(path, smoke=True)
    monkeypatch.setenv("RETRLAB_SEEDS", "1")
    one_seed = execution_key(path, smoke=True)
    monkeypatch.setenv("RETRLAB_PRECISION", "fp32")
    assert len({plain, one_seed, execution_key(path, smoke=True)}) == 3


def test_only_the_changed_notebook_is_executed_again(home, tmp_path, monkeypatch):
    monkeypatch.setattr(site, "copy_assets", lambda out: out)  # the assets are tested below
    folder = tmp_path / "nb"
    folder.mkdir()
    first = write_notebook(folder / "01_first.ipynb", "print('first ran')")
    write_notebook(folder / "02_second.ipynb", "print('second ran')")
    pages = site.build_site(tmp_path / "site", folder=folder, log=lambda line: None)
    assert [p.reused for p in pages] == [False, False]
    write_notebook(first, "print('first changed')")
    pages = site.build_site(tmp_path / "site", folder=folder, log=lambda line: None)
    assert [(p.name, p.reused) for p in pages] == [("01_first", False), ("02_second", True)]
    assert "first changed" in (tmp_path / "site" / "01_first.html").read_text()
    assert (tmp_path / "site" / "01_first.html").stat().st_mode & 0o777 == 0o644  # a web server may read it
    assert len(list((home / "executed").glob("*.ipynb"))) == 3  # the old execution of 01 stays, unused
    index = (tmp_path / "site" / "index.html").read_text()
    assert 'href="01_first.html"' in index and 'href="02_second.html"' in index


def test_a_damaged_cached_execution_is_executed_again(home, tmp_path):
    path = write_notebook(tmp_path / "01_a.ipynb", "print('hello')")
    nb, _, reused = execute_cached(path)
    assert not reused
    cached = executed_path(path, smoke=True)
    cached.write_text(cached.read_text()[:-20])  # cut short, as a killed write would leave it
    with pytest.warns(UserWarning, match="01_a-smoke-.* is damaged"):
        _, _, reused = execute_cached(path)
    assert not reused
    assert execute_cached(path)[2]  # the re-execution was cached again


# --- pages and index -------------------------------------------------------------------------------
def test_title_and_headline_from_the_notebook():
    nb = nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_markdown_cell("Intro text\n# 07 · SimANS: where they hide\nmore"),
        nbformat.v4.new_code_cell("x", outputs=[nbformat.v4.new_output("stream", text="not this\n")]),
        nbformat.v4.new_markdown_cell("## What to notice (computed from this run)"),
        nbformat.v4.new_code_cell("y", outputs=[nbformat.v4.new_output("stream", text="\n- SimANS picks 3% FN\n- b\n")]),
    ])
    assert site.notebook_title(nb) == "07 · SimANS: where they hide"
    assert site.headline(nb) == "SimANS picks 3% FN"
    assert site.headline(nbformat.v4.new_notebook()) == ""


def test_a_page_that_would_load_from_the_network_is_refused(tmp_path):
    linked = nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell(
        "# 99 · links are fine\nSee [the paper](https://arxiv.org/abs/2210.11773).")])
    page = site.render_page(linked, tmp_path / "99_links.html").read_text()
    assert 'src="_static/require.min.js"' in page and "_static/mathjax/MathJax.js" in page
    assert "<details class=\"retrlab-code\">" not in page  # no code cell in this one
    remote = nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell('<img src="https://example.org/x.png">')])
    with pytest.raises(ValueError, match=r"99_remote.html would load .*https://example.org/x.png"):
        site.render_page(remote, tmp_path / "99_remote.html")
    assert not (tmp_path / "99_remote.html").exists()


def test_the_index_links_notebook_names_and_drops_repository_links(tmp_path):
    readme = tmp_path / "README.md"
    readme.write_text("# x\n## What it teaches\nHow they build on each other:\n```mermaid\nflowchart LR\n```\n\n"
                      "| notebook | technique |\n| --- | --- |\n"
                      "| `07_simans_ambiguous_negatives` | SimANS, see [docs/methods.md](docs/methods.md) and "
                      "[the paper](https://arxiv.org/abs/2210.11773) |\n\nMeasured wall times: below.\n## Next\n")
    section = site.what_it_teaches(readme)
    assert "see docs/methods.md and [the paper](https://arxiv.org/abs/2210.11773)" in section
    assert "mermaid" not in section and "How they build" not in section and "below" not in section
    assert "[07_simans_ambiguous_negatives](07_simans_ambiguous_negatives.html)" in section


# --- the assets ------------------------------------------------------------------------------------
def fake_tarball(files: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


class FakeResponse(io.BytesIO):
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def test_the_html_manager_is_checked_against_its_pinned_sha512(home, monkeypatch):
    payload = fake_tarball({"package/dist/embed-amd.js": b"define()", "package/dist/a.woff2": b"font",
                            "package/dist/embed.js.map": b"{}", "package/README.md": b"x"})
    monkeypatch.setattr(site.urllib.request, "urlopen", lambda url, timeout: FakeResponse(payload))
    with pytest.raises(ValueError, match="sha512 .* is not the pinned"):
        site.html_manager_dir()
    assert not list((home / "site-assets").glob("html-manager-*/package"))  # nothing half-installed
    monkeypatch.setattr(site, "HTML_MANAGER_SHA512", base64.b64encode(hashlib.sha512(payload).digest()).decode())
    dist = site.html_manager_dir()
    assert sorted(p.name for p in dist.iterdir()) == ["a.woff2", "embed-amd.js", "embed.js.map"]
    static = site.copy_assets(home / "site")
    assert sorted(p.name for p in (static / "html-manager").iterdir()) == ["a.woff2", "embed-amd.js"]
    assert (static / "require.min.js").stat().st_size > 10_000
    assert (static / "mathjax" / "MathJax.js").is_file() and not (static / "mathjax" / "localization").exists()


def test_site_command_says_what_it_took_from_the_cache(home, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(site, "copy_assets", lambda out: out)
    folder = tmp_path / "nb"
    folder.mkdir()
    write_notebook(folder / "01_only.ipynb", "print('ran')")
    args = ["site", "--dir", str(folder), "--out", str(tmp_path / "out")]
    assert main(args) == 0
    assert "1 pages (1 executed, 0 from the cache)" in capsys.readouterr().out
    assert main(args) == 0
    assert "1 pages (0 executed, 1 from the cache)" in capsys.readouterr().out
    write_notebook(folder / "01_only.ipynb", "raise RuntimeError('broken lesson')")
    assert main(args) == 1
    assert "a notebook failed" in capsys.readouterr().err
    assert len(list((home / "executed").glob("*.ipynb"))) == 1  # a failed run is not cached
    with pytest.raises(SystemExit):
        main(["site", "--smoke", "--default"])


# --- the smoke site, and a reader's browser --------------------------------------------------------
@pytest.fixture(scope="module")
def smoke_site(tmp_path_factory):
    """Every notebook, smoke mode, rendered (from the cache the notebook tests filled)."""
    out = tmp_path_factory.mktemp("site")
    try:
        site.html_manager_dir()
    except OSError as err:
        pytest.skip(f"the widgets HTML manager is not cached and cannot be fetched here ({err}); "
                    "run `retrlab site --fetch-assets` once (CI does)")
    started = time.perf_counter()
    pages = site.build_site(out)
    print(f"smoke site: {len(pages)} pages, {sum(p.reused for p in pages)} from the cache, "
          f"{time.perf_counter() - started:.0f} s, {sum(f.stat().st_size for f in out.rglob('*')) / 2**20:.1f} MiB")
    return out, pages


@pytest.mark.notebook
def test_smoke_site_builds(smoke_site):
    out, pages = smoke_site
    names = [p.stem for p in find_notebooks(NOTEBOOK_DIR)]
    assert [p.name for p in pages] == names
    index = (out / "index.html").read_text()
    for page in pages:
        assert f'href="{page.name}.html"' in index
        assert page.headline, f"{page.name} printed nothing under 'What to notice'"
        assert (out / f"{page.name}.html").stat().st_size > 10_000
    state = widget_state((out / f"{SIMANS}.html").read_text())
    figures = [m for m in state.values() if m["model_name"] == "OutputModel"
               and any("image/png" in o.get("data", {}) for o in m["state"]["outputs"])]
    assert len(figures) >= 3, "07's explorer, distribution views and board each save a drawn figure"


def widget_state(page: str) -> dict:
    """The widget state embedded in a page (the models the HTML manager draws)."""
    found = re.search(r'<script type="application/vnd.jupyter.widget-state\+json">(.*?)</script>', page, re.S)
    assert found, "no widget state in the page"
    return json.loads(found.group(1))["state"]


@pytest.mark.notebook
@pytest.mark.browser
@pytest.mark.skipif(missing_browser_tools() is not None, reason=str(missing_browser_tools()))
def test_site_shows_the_simans_widgets_offline(smoke_site):
    from playwright.sync_api import expect

    out, _ = smoke_site
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    with static_server(out, ARTIFACTS / "http.log") as base, chromium_page() as page:
        page.goto(f"{base}/index.html")
        page.screenshot(path=str(ARTIFACTS / "index.png"), full_page=True)
        page.locator("table.notebooks a", has_text=re.compile(r"^07 · SimANS")).click()
        page.wait_for_url(f"**/{SIMANS}.html")
        explorer = page.locator(".simans-explorer").first
        figure = explorer.locator(".simans-explorer-plot img")  # drawn by the HTML manager from saved state
        expect(figure).to_be_visible(timeout=60_000)
        expect(explorer.locator(".simans-explorer-plot pre")).to_contain_text("false negatives picked")
        assert figure.evaluate("img => img.naturalWidth") > 300
        # a matplotlib figure shown by plt.show(), outside any widget
        plain = page.locator(".jp-Cell-outputArea > .jp-OutputArea-child > .jp-RenderedImage > img")
        expect(plain.first).to_be_visible()
        assert plain.first.evaluate("img => img.naturalWidth") > 300
        expect(page.locator("details.retrlab-code").first).not_to_have_attribute("open", "")
        page.wait_for_load_state("networkidle")
        explorer.scroll_into_view_if_needed()
        explorer.screenshot(path=str(ARTIFACTS / "simans_explorer.png"))
        page.screenshot(path=str(ARTIFACTS / "simans_page.png"))
        assert page.failed_requests == [], page.failed_requests
        assert page.js_errors == [], page.js_errors
    print(f"site browser test: {time.perf_counter() - started:.1f} s; screenshots in {ARTIFACTS}")
