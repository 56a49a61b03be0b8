"""``retrlab present VIEW``: a classroom dashboard served by Voila on 127.0.0.1 (widgets only, no code).

The view's data are built into the cache first (``retrlab.dashboards.prepare``), so each page load —
Voila gives every visitor a kernel of their own — only loads them. Voila listens on 127.0.0.1 only,
on a free port unless one is given, behind a random token that the printed URL carries. The page
template is ``retrlab`` (``retrlab/dashboards/share/jupyter/voila/templates/retrlab``): Voila's lab
template without the stylesheets it would fetch from a CDN, so the dashboard works offline.
"""
from __future__ import annotations

import os
import secrets
import socket
import subprocess
import sys

from retrlab.dashboards import FOLDER, dashboard_path, prepare

POOL_SIZE = 2  # executed kernels kept ready: two page loads in a row open at once


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def voila_command(view: str, port: int, token: str) -> list[str]:
    """The Voila server for one dashboard notebook: loopback only, sources stripped, no retry port.

    Preheated kernels: Voila runs the notebook in ``POOL_SIZE`` kernels ahead of any visitor (and
    refills the pool after each page load), so a page opens on an already executed notebook instead
    of waiting for a kernel to start and import torch. Voila runs through ``retrlab.dashboards.voila_main``,
    which keeps a missed zmq wake-up from stalling a page forever.
    """
    return [sys.executable, "-m", "retrlab.dashboards.voila_main", str(dashboard_path(view)), "--no-browser", "--Voila.ip=127.0.0.1",
            f"--port={port}", "--Voila.port_retries=0", f"--token={token}", "--strip_sources=True",
            "--show_tracebacks=True", "--template=retrlab", "--preheat_kernel=True", f"--pool_size={POOL_SIZE}"]


def voila_env(smoke: bool) -> dict[str, str]:
    """The variables Voila needs on top of the caller's: retrlab's template on its path, the mode."""
    share = str(FOLDER / "share" / "jupyter")
    path = os.pathsep.join([share, *filter(None, [os.environ.get("JUPYTER_PATH")])])
    return {"JUPYTER_PATH": path, "RETRLAB_SMOKE": "1" if smoke else "0"}


def present(view: str, *, port: int | None = None, smoke: bool = False) -> int:
    """Prepare ``view``, start Voila, print its URL, and serve until interrupted (Ctrl+C)."""
    prepare(view, smoke)
    port, token = port or free_port(), secrets.token_hex(16)
    env = {**os.environ, **voila_env(smoke)}
    print(f"retrlab present {view}: open http://127.0.0.1:{port}/?token={token}  (Ctrl+C stops it)", flush=True)
    server = subprocess.Popen(voila_command(view, port, token), env=env)
    try:
        return server.wait()
    except KeyboardInterrupt:
        server.terminate()
        return server.wait(timeout=15)
