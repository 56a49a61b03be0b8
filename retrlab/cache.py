"""The cache folder and atomic writes.

Everything retrlab builds (the wiki-car data, embeddings, fine-tuned models) lives under one
folder, ``$RETRLAB_HOME`` (default ``~/.cache/retrlab``). Writes are atomic: a file or folder is
written under a temporary name in the same folder and renamed into place only when complete, so a
build that is killed midway leaves nothing half-written behind and the next call rebuilds it
(and removes the dead build's temporary folder).
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any


def home() -> Path:
    """The cache folder: ``$RETRLAB_HOME`` or ``~/.cache/retrlab`` (created on first use)."""
    path = Path(os.environ.get("RETRLAB_HOME", "~/.cache/retrlab")).expanduser()
    path.mkdir(parents=True, exist_ok=True)
    return path


def atomic_write_text(path: str | Path, text: str) -> Path:
    """Write ``text`` to ``path`` via a temporary file and ``os.replace`` (all or nothing)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def atomic_write_json(path: str | Path, obj: Any) -> Path:
    """Write ``obj`` as JSON atomically."""
    return atomic_write_text(path, json.dumps(obj, ensure_ascii=False))


def load_json(path: str | Path) -> Any:
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def cached_dir(name: str, build: Callable[[Path], None], *, rebuild: bool = False) -> Path:
    """Return ``home()/name``, building it first if absent.

    ``build(tmp_dir)`` fills a fresh temporary folder; it is renamed to its final name only when
    ``build`` returns, so an interrupted build never leaves a folder that looks finished.
    """
    if not name or Path(name).is_absolute() or ".." in Path(name).parts:
        raise ValueError(f"cache name must be a non-empty relative path inside {home()}, got {name!r}")
    final = home() / name
    if final.is_dir() and not rebuild:
        return final
    final.parent.mkdir(parents=True, exist_ok=True)
    remove_abandoned(final)
    # the builder's process id in the name tells a later build whether this folder was abandoned
    tmp = Path(tempfile.mkdtemp(dir=final.parent, prefix=f".{final.name}.{os.getpid()}.", suffix=".tmp"))
    try:
        build(tmp)
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return final


def remove_abandoned(final: Path) -> list[Path]:
    """Delete the temporary folders of builds of ``final`` whose process is gone (killed midway).

    A build killed by SIGKILL (or a power cut) cannot clean up after itself; its half-written
    folder ``.{name}.{pid}.*.tmp`` is never visible under the final name, and the next build of the
    same name removes it here. Folders of builders still running (another notebook) are kept.
    """
    removed = []
    for tmp in final.parent.glob(f".{final.name}.*.tmp"):
        pid = tmp.name[len(final.name) + 2:].split(".")[0]
        if tmp.is_dir() and pid.isdigit() and not _alive(int(pid)):
            shutil.rmtree(tmp, ignore_errors=True)
            removed.append(tmp)
    return removed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)  # signal 0: only asks whether the process exists
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True
