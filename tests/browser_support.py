"""Helpers for real-browser tests: a JupyterLab server on 127.0.0.1 and headless Debian Chromium.

The pitfalls of headless JupyterLab tests this handles: --allow-root as root (G1), IdentityProvider
token (G2), wait for a *connected* idle kernel (G3), a fresh workspace per page (G4), the news toast
switched off (G5), a temporary copy of the notebooks (G7), no --user-data-dir (G8), and waits on a
text marker instead of sleeps (G11). Never ``playwright install``: the browser is /usr/bin/chromium.
"""
from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path

CHROMIUM = "/usr/bin/chromium"
NETWORK = re.compile(r"^(https?|wss?)://")
NOT_LOOPBACK = re.compile(r"^(https?|wss?)://(?!(127\.0\.0\.1|localhost)[:/])")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--disable-dev-shm-usage"]


def missing_browser_tools() -> str | None:
    """Why browser tests cannot run here (None when they can)."""
    if not Path(CHROMIUM).exists():
        return f"{CHROMIUM} is missing (apt-get install -y chromium)"
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "playwright is not installed (pip install playwright==1.65.2; never `playwright install`)"
    try:
        import jupyterlab  # noqa: F401
    except ImportError:
        return "jupyterlab is not installed"
    return None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def jupyterlab_server(notebooks: list[Path], workdir: Path, env: dict[str, str], log: Path,
                      start_timeout: float = 90.0):
    """Serve temporary copies of ``notebooks`` with JupyterLab; yields {"base", "token", "root"}."""
    root, settings = workdir / "root", workdir / "settings"
    root.mkdir(parents=True)
    settings.mkdir()
    for nb in notebooks:
        shutil.copy(nb, root / nb.name)  # G7: Lab autosaves what it opens
    (settings / "overrides.json").write_text(json.dumps(
        {"@jupyterlab/apputils-extension:notification": {"fetchNews": "false", "checkForUpdates": False}}))
    port, token = free_port(), secrets.token_hex(16)
    env = {**os.environ, **env}
    for name in ("JUPYTER_CONFIG_DIR", "JUPYTER_RUNTIME_DIR", "JUPYTERLAB_WORKSPACES_DIR"):
        env[name] = str(workdir / name.lower())
    cmd = [sys.executable, "-m", "jupyterlab", "--no-browser", "--ip=127.0.0.1", f"--port={port}",
           "--ServerApp.port_retries=0", f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={root}",
           f"--LabServerApp.app_settings_dir={settings}", "--LabApp.expose_app_in_browser=True"]
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        cmd.append("--allow-root")  # G1: otherwise Lab exits at once as root
    base = f"http://127.0.0.1:{port}"
    with serving(cmd, env, log, f"{base}/api/status?token={token}", start_timeout, cwd=root):
        yield {"base": base, "token": token, "root": root}


@contextmanager
def serving(cmd: list[str], env: dict[str, str], log: Path, ready_url: str, start_timeout: float = 90.0,
            cwd: Path | None = None):
    """Run a server process until ``ready_url`` answers 200; SIGTERM it (its kernels too) on exit."""
    name = Path(cmd[2] if cmd[1] == "-m" else cmd[0]).name
    with open(log, "w") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=cwd)
        try:
            deadline = time.monotonic() + start_timeout
            while True:
                if proc.poll() is not None:
                    raise RuntimeError(f"{name} exited with code {proc.returncode}; see {log}")
                try:
                    with urllib.request.urlopen(ready_url, timeout=2) as r:
                        if r.status == 200:
                            break
                except OSError:
                    pass
                if time.monotonic() > deadline:
                    raise TimeoutError(f"{name} did not answer within {start_timeout} s; see {log}")
                time.sleep(0.25)  # polling interval for readiness, not synchronisation with the page
            yield proc
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


@contextmanager
def voila_server(command: list[str], env: dict[str, str], log: Path, ready_path: str, start_timeout: float = 90.0):
    """Serve with a Voila ``command`` (``retrlab.present.voila_command``); ready when ``ready_path`` answers."""
    port = int(next(a for a in command if a.startswith("--port=")).split("=")[1])
    with serving(command, {**os.environ, **env}, log, f"http://127.0.0.1:{port}{ready_path}", start_timeout):
        yield f"http://127.0.0.1:{port}"


@contextmanager
def static_server(folder: Path, log: Path):
    """A plain HTTP server for a folder on 127.0.0.1 (the rendered site, as a reader's browser sees it)."""
    port = free_port()
    cmd = [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1", "--directory", str(folder)]
    with serving(cmd, dict(os.environ), log, f"http://127.0.0.1:{port}/index.html"):
        yield f"http://127.0.0.1:{port}"


@contextmanager
def chromium_page(viewport: tuple[int, int] = (1400, 1100)):
    """A fresh headless page that aborts every non-loopback request and records what went wrong.

    ``page.js_errors``: uncaught page errors; ``page.failed_requests``: network requests (http, ws)
    that failed or answered >= 400, a blocked non-loopback one included. Not network requests, so not
    counted: ``about:blank`` (MathJax 2 probes its web fonts with one, which Chromium refuses) and data: URLs.
    """
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        context = browser.new_context(viewport={"width": viewport[0], "height": viewport[1]})
        context.route(NOT_LOOPBACK, lambda route: route.abort())
        page = watched(context.new_page())
        try:
            yield page
        finally:
            browser.close()


def watched(page):
    """Record on ``page`` its uncaught errors (``js_errors``) and failed network requests (``failed_requests``)."""
    page.set_default_timeout(60_000)
    page.js_errors, page.failed_requests = [], []
    page.on("pageerror", lambda e: page.js_errors.append(str(e)))
    page.on("requestfailed", lambda r: NETWORK.match(r.url) and page.failed_requests.append(
        f"{r.url} ({r.failure})"))
    page.on("response", lambda r: r.status >= 400 and page.failed_requests.append(f"{r.url} (HTTP {r.status})"))
    return page
