"""The rendered site (``retrlab site``): every notebook executed, rendered to HTML, with an index page.

Library: nbconvert's ``lab`` template (nbconvert is already a dependency of the notebook tests), extended
by ``retrlab/site_template/retrlab/index.html.j2`` (code cells folded, a link to the index), plus an
index page generated here. Why this one and not mkdocs-jupyter or Jupyter Book: see the README's
"The rendered site" section.

* **Executions are cached** (``retrlab.notebooks.execute_cached``): a notebook is executed again only
  when its content, the mode or retrlab's version changed.
* **Widgets from their saved state.** Notebooks are executed with ``store_widget_state=True``; the
  page embeds that state and the Jupyter widgets HTML manager (``embed-amd.js``) draws the widgets
  as they were at the end of the run, read-only (a slider moves, but no kernel redraws the figure).
* **Offline.** Every script the pages load is copied into ``_static/``: require.js from the voila
  wheel, MathJax 2 from the jupyter-server-mathjax wheel, and the widgets HTML manager, fetched once
  from the npm registry (pinned version, checked against its sha512) into ``$RETRLAB_HOME/site-assets``
  (``retrlab site --fetch-assets`` does only that). No page refers to a CDN.
"""
from __future__ import annotations

import base64
import hashlib
import html
import io
import re
import shutil
import tarfile
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import nbformat

from retrlab.cache import atomic_write_text, home
from retrlab.notebooks import NOTEBOOK_DIR, execute_cached, find_notebooks

STATIC = "_static"
TEMPLATE_DIR = Path(__file__).parent / "site_template"
README = Path(__file__).resolve().parents[1] / "README.md"  # in a source checkout
# @jupyter-widgets/html-manager as ipywidgets 8 pins it; the integrity is the npm registry's
HTML_MANAGER_VERSION = "1.0.15"
HTML_MANAGER_URL = ("https://registry.npmjs.org/@jupyter-widgets/html-manager/-/"
                    f"html-manager-{HTML_MANAGER_VERSION}.tgz")
HTML_MANAGER_SHA512 = "5thBIV6ymNgmPVOHvzx+gGy8ZSKmSazhtGw4/c4xJDVzRhG9PTeQsRjF3FUTopvFi//SABeNz1yp47bCrJ3CQA=="
MATHJAX_CONFIG = "TeX-AMS-MML_HTMLorMML-full,Safe"
REMOTE_LOAD = re.compile(r"""<(?:script|img|link|iframe)\b[^>]*?(?:src|href)=["']?(?:https?:)?//[^"' >]+""")
MATHJAX_PARTS = ("MathJax.js", "config", "extensions", "fonts", "jax")  # its localization/ is not needed
# of the HTML manager's dist/: the AMD bundle the template loads and its icon fonts (not the other bundles)
HTML_MANAGER_FILES = re.compile(r"embed-amd\.js|.*\.(woff2?|ttf|eot|svg)")


@dataclass
class PageInfo:
    """One notebook's row on the index."""

    name: str  # file stem, e.g. "07_simans_ambiguous_negatives"
    title: str
    seconds: float
    reused: bool  # taken from the execution cache
    headline: str


# --- the assets ------------------------------------------------------------------------------------
def html_manager_dir() -> Path:
    """The widgets HTML manager's ``dist/`` folder, fetched from npm once and cached."""
    folder = home() / "site-assets" / f"html-manager-{HTML_MANAGER_VERSION}"
    dist = folder / "package" / "dist"  # the npm tarball's layout
    if (dist / "embed-amd.js").is_file():
        return dist
    try:
        with urllib.request.urlopen(HTML_MANAGER_URL, timeout=60) as response:
            payload = response.read()
    except OSError as err:
        raise OSError(f"cannot fetch the widgets HTML manager from {HTML_MANAGER_URL} ({err}); the site needs "
                      f"it once, then it is cached in {folder}") from None
    digest = base64.b64encode(hashlib.sha512(payload).digest()).decode()
    if digest != HTML_MANAGER_SHA512:
        raise ValueError(f"{HTML_MANAGER_URL}: sha512 {digest} is not the pinned {HTML_MANAGER_SHA512}")
    tmp = folder.with_name(folder.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    with tarfile.open(fileobj=io.BytesIO(payload), mode="r:gz") as tar:
        members = [m for m in tar.getmembers() if m.isfile() and m.name.startswith("package/dist/")]
        tar.extractall(tmp, members=members, filter="data")
    shutil.rmtree(folder, ignore_errors=True)
    tmp.rename(folder)  # all or nothing: a killed fetch leaves only the .tmp folder behind
    return dist


def require_js() -> Path:
    """require.js as the voila wheel ships it (the lab template loads the widget manager with it)."""
    from jupyter_core.paths import jupyter_path

    for root in jupyter_path("voila", "templates", "base", "static"):
        candidate = Path(root) / "require.min.js"
        if candidate.is_file():
            return candidate
    raise FileNotFoundError("require.min.js not found: pip install voila (the site serves its copy)")


def mathjax_dir() -> Path:
    try:
        import jupyter_server_mathjax
    except ImportError:
        raise FileNotFoundError("MathJax not found: pip install jupyter-server-mathjax (the site serves its copy)"
                                ) from None
    return Path(jupyter_server_mathjax.__file__).parent / "static"


def copy_assets(out: Path) -> Path:
    """Fill ``out/_static`` with every script and font the pages load."""
    static = out / STATIC
    manager = html_manager_dir()
    shutil.rmtree(static, ignore_errors=True)
    static.mkdir(parents=True)
    shutil.copy(require_js(), static / "require.min.js")
    (static / "html-manager").mkdir()
    for path in manager.iterdir():
        if HTML_MANAGER_FILES.fullmatch(path.name):
            shutil.copy(path, static / "html-manager" / path.name)
    (static / "mathjax").mkdir()
    for part in MATHJAX_PARTS:
        source = mathjax_dir() / part
        (shutil.copytree if source.is_dir() else shutil.copy)(source, static / "mathjax" / part)
    return static


# --- the pages -------------------------------------------------------------------------------------
def exporter():
    """nbconvert's lab template, extended by retrlab's, with every script taken from ``_static``."""
    from nbconvert import HTMLExporter

    return HTMLExporter(template_name="retrlab", extra_template_basedirs=[str(TEMPLATE_DIR)],
                        require_js_url=f"{STATIC}/require.min.js",
                        widget_renderer_url=f"{STATIC}/html-manager/embed-amd.js",
                        mathjax_url=f"{STATIC}/mathjax/MathJax.js?config={MATHJAX_CONFIG}")


def notebook_title(nb: nbformat.NotebookNode) -> str:
    """The first markdown heading, e.g. "07 · SimANS: ambiguous negatives, and where ..."."""
    for cell in nb.cells:
        if cell.cell_type == "markdown":
            for line in cell.source.splitlines():
                if line.startswith("#"):
                    return line.lstrip("#").strip()
    return ""


def _text_outputs(cell) -> str:
    parts = [o.get("text", "") for o in cell.get("outputs", []) if o.get("output_type") == "stream"]
    parts += [o["data"]["text/plain"] for o in cell.get("outputs", [])
              if o.get("output_type") in ("execute_result", "display_data") and "text/plain" in o.get("data", {})]
    return "".join(parts)


def headline(nb: nbformat.NotebookNode) -> str:
    """The first line the notebook printed under its "What to notice" heading ("" if none)."""
    after = False
    for cell in nb.cells:
        if cell.cell_type == "markdown":
            after = after or cell.source.lstrip().lower().startswith("## what to notice")
        elif after:
            for line in _text_outputs(cell).splitlines():
                if line.strip():
                    return line.strip().removeprefix("- ")
    return ""


def render_page(nb: nbformat.NotebookNode, target: Path) -> Path:
    page, _ = exporter().from_notebook_node(nb, resources={"metadata": {"name": notebook_title(nb)}})
    remote = REMOTE_LOAD.search(page)  # the offline promise, checked on every page (links are fine)
    if remote:
        raise ValueError(f"{target.name} would load {remote.group(0)} from the network")
    return publish(target, page)


def publish(target: Path, text: str) -> Path:
    """Write a page atomically, readable by a web server running as another user (0644)."""
    atomic_write_text(target, text).chmod(0o644)
    return target


# --- the index -------------------------------------------------------------------------------------
def what_it_teaches(readme: Path = README) -> str:
    """The technique table of the README's "What it teaches" section, notebooks linked to their pages."""
    if not readme.is_file():
        return ""
    text = readme.read_text(encoding="utf-8")
    match = re.search(r"^## What it teaches\n(.*?)(?=^## )", text, flags=re.S | re.M)
    if not match:
        return ""
    section = re.sub(r"```mermaid.*?```\n", "", match.group(1), flags=re.S)
    tables = [para for para in re.split(r"\n\s*\n", section) if para.strip().startswith("|")]
    if not tables:
        return ""
    section = tables[0]  # the technique table; its introduction speaks of the diagram, its notes of the README
    section = re.sub(r"\[([^\]]+)\]\((?!https?:)[^)]+\)", r"\1", section)  # repository links do not exist here
    return re.sub(r"`(\d\d_\w+)`", r"[\1](\1.html)", section)  # notebook names link to their pages


def index_html(pages: list[PageInfo], mode: str) -> str:
    from nbconvert.filters.markdown_mistune import markdown2html_mistune

    rows = "\n".join(
        f'<tr><td><a href="{p.name}.html">{html.escape(p.title or p.name)}</a></td>'
        f'<td class="num">{p.seconds:.0f} s</td><td>{html.escape(p.headline)}</td></tr>' for p in pages)
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>retrlab: the notebooks, executed</title><link rel="icon" href="data:,">
<style>
  body {{ font-family: system-ui, sans-serif; max-width: 1100px; margin: 2em auto; padding: 0 1em; line-height: 1.45; }}
  table {{ border-collapse: collapse; font-size: 0.92em; }}
  td, th {{ border-bottom: 1px solid #ddd; padding: 4px 8px; vertical-align: top; text-align: left; }}
  td.num {{ text-align: right; white-space: nowrap; }}
</style></head>
<body>
<h1>retrlab: learn how dense retrievers are trained</h1>
<p>One notebook per technique for training dense retrievers, on real Wikipedia text with a real pretrained
encoder, on a CPU. Every page below is a notebook as it ran ({mode} mode), with its figures, tables and
printed conclusions; the widgets show the state they were left in (read-only: run the notebook in Jupyter
to move them). Code cells are folded: click <em>code</em> to read one.</p>
<h2 id="notebooks">The notebooks</h2>
<table class="notebooks"><tr><th>notebook</th><th>wall time</th><th>headline result (computed in that run)</th></tr>
{rows}
</table>
<h2 id="techniques">What each notebook teaches</h2>
{markdown2html_mistune(what_it_teaches())}
</body></html>
"""


def build_site(out: str | Path, *, smoke: bool = True, only: list[str] | None = None,
               folder: str | Path = NOTEBOOK_DIR, timeout: int = 900, rerun: bool = False,
               log=print) -> list[PageInfo]:
    """Execute (or reuse) every notebook and write the site into ``out``; returns the index rows."""
    out = Path(out)
    notebooks = find_notebooks(folder, only)
    copy_assets(out)  # first: a missing asset fails before any notebook runs
    pages = []
    for path in notebooks:
        nb, seconds, reused = execute_cached(path, smoke=smoke, timeout=timeout, rerun=rerun)
        render_page(nb, out / f"{path.stem}.html")
        pages.append(PageInfo(path.stem, notebook_title(nb), seconds, reused, headline(nb)))
        log(f"{path.stem:<40} {'cached' if reused else 'executed':>8} {seconds:7.1f} s -> {out / path.stem}.html")
    publish(out / "index.html", index_html(pages, "smoke" if smoke else "default"))
    return pages
