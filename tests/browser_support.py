"""Helpers for real-browser tests: a JupyterLab server on 127.0.0.1 and headless Debian Chromium.

The pitfalls of headless JupyterLab tests this handles: --allow-root as root (G1), IdentityProvider
token (G2), wait for a *connected* idle kernel (G3), a fresh workspace per page (G4), the news toast
switched off (G5), a temporary copy of the notebooks (G7), no --user-data-dir (G8), and waits on a
text marker instead of sleeps (G11). Never ``playwright install``: the browser is /usr/bin/chromium.
"""
from __future__ import annotations

import json
import os
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
    with open(log, "w") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=root)
        try:
            deadline = time.monotonic() + start_timeout
            while True:
                if proc.poll() is not None:
                    raise RuntimeError(f"jupyter lab exited with code {proc.returncode}; see {log}")
                try:
                    with urllib.request.urlopen(f"{base}/api/status?token={token}", timeout=2) as r:
                        if r.status == 200:
                            break
                except OSError:
                    pass
                if time.monotonic() > deadline:
                    raise TimeoutError(f"jupyter lab did not answer within {start_timeout} s; see {log}")
                time.sleep(0.25)  # polling interval for readiness, not synchronisation with the page
            yield {"base": base, "token": token, "root": root}
        finally:
            proc.send_signal(signal.SIGTERM)  # shuts its kernels down too
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
