"""The cache folder, atomic writes, and the manifests that let a load trust what it reads.

Everything retrlab builds (the wiki-car data, candidate pools, embeddings, fine-tuned models,
pretraining checkpoints) lives under one folder, ``$RETRLAB_HOME`` (default ``~/.cache/retrlab``).

* **Atomic writes.** A file or folder is written under a temporary name in the same folder and
  renamed into place only when complete, so a build that is killed midway leaves nothing
  half-written behind and the next call rebuilds it (and removes the dead build's temporary folder).
* **Manifests.** Every cached entry carries a manifest, written last (atomically, after every other
  file): a folder made by :func:`cached_dir` holds ``retrlab-manifest.json``; a single-file artifact
  (a pool, an embedding matrix) has ``<file>.manifest.json`` beside it (:func:`seal`). It lists each
  file with its size and a sha256. Loading checks it (:func:`problem`): a missing, added, resized or
  changed file, a truncated JSON, an empty ``meta.json``, or no manifest at all (an entry built by an
  older retrlab) is never read. **The rule, the same everywhere: a damaged cache entry is rebuilt
  automatically, with a** :class:`CacheRebuildWarning` **that names the entry and the file** — every
  entry has its builder at hand and builds are seeded, so the rebuild gives the numbers an intact
  cache would have given, never silently different ones.
* **Cost of checking.** Sizes are always compared; files up to :data:`FULL_HASH_LIMIT` (16 MiB:
  every JSON of wiki-car, tokenizers, histories) are hashed whole; a larger file (model weights)
  is hashed on its first and last MiB. Measured once on 2 loaded CPU cores: the whole wiki-car
  folder (4 MB) hashes in ~10 ms; MiniLM's 91 MB of weights take ~200 ms whole but ~2 ms on the
  ends. Truncation, torn or empty writes and deleted or swapped files change the size or the ends;
  a same-size edit in the middle of a weights file does not (the cache guards against accidents,
  not against an attacker who can write to it anyway).
* **The folder itself.** ``$RETRLAB_HOME`` that is a file, whose parent folder does not exist, or
  that cannot be created or written gives one :class:`CacheError` naming it, before any work.
"""
from __future__ import annotations

import errno
import hashlib
import json
import os
import shutil
import tempfile
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

MANIFEST = "retrlab-manifest.json"  # inside a cached folder; a cached file has "<name>.manifest.json"
FULL_HASH_LIMIT = 16 * 2**20  # bytes: a file up to this size is hashed whole
END_BYTES = 2**20  # a larger file is hashed on its first and last MiB


class CacheError(OSError):
    """``$RETRLAB_HOME`` (or a folder in it) cannot hold the cache; the message names it."""


class CacheRebuildWarning(UserWarning):
    """A cache entry did not match its manifest and is being rebuilt."""


# --- the cache folder ---------------------------------------------------------------------------
def home() -> Path:
    """The cache folder: ``$RETRLAB_HOME`` or ``~/.cache/retrlab`` (created on first use).

    An explicit ``$RETRLAB_HOME`` must name a folder whose parent exists: a typo should not quietly
    create a chain of new folders.
    """
    configured = os.environ.get("RETRLAB_HOME")
    path = Path(configured or "~/.cache/retrlab").expanduser()
    if path.exists() and not path.is_dir():
        raise CacheError(f"RETRLAB_HOME={path} is a file, not a folder: point RETRLAB_HOME at a folder")
    if configured and not path.parent.is_dir():
        raise CacheError(f"RETRLAB_HOME={path}: its parent {path.parent} is not an existing folder "
                         f"(create it, or fix the path)")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise CacheError(f"cannot create RETRLAB_HOME={path} ({e.strerror}): point RETRLAB_HOME at a "
                         f"writable folder") from None
    return path


def _unwritable(folder: Path) -> str | None:
    """Why no file can be created in the existing ``folder`` (None: it can). Tried, not guessed:
    permission bits say nothing for root, and nothing about read-only mounts."""
    try:
        fd, probe = tempfile.mkstemp(dir=folder, prefix=".retrlab-probe.")
    except OSError as e:
        return e.strerror or str(e)
    os.close(fd)
    os.unlink(probe)
    return None


def check_writable(path: str | Path) -> Path:
    """Fail now, naming ``path``, if a file could not be written there later (before a long run).

    ``path`` must not be a folder; its nearest existing ancestor must be a writable folder (the
    missing ones are created when the file is written).
    """
    path = Path(path)
    if path.is_dir():
        raise IsADirectoryError(errno.EISDIR, "is a folder: give the name of a file to write", str(path))
    existing = next(p for p in [path.parent, *path.parent.parents] if p.exists())
    if not existing.is_dir():
        raise NotADirectoryError(errno.ENOTDIR, f"cannot write there: {existing} is a file, not a folder",
                                 str(path))
    reason = _unwritable(existing)
    if reason:
        raise PermissionError(errno.EACCES, f"cannot write there: the folder {existing} is not writable "
                                            f"({reason})", str(path))
    return path


# --- atomic writes and JSON -------------------------------------------------------------------
def atomic_write_text(path: str | Path, text: str) -> Path:
    """Write ``text`` to ``path`` via a temporary file and ``os.replace`` (all or nothing)."""
    path = Path(path)
    if path.is_dir():
        raise IsADirectoryError(errno.EISDIR, "is a folder, not a file", str(path))
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as e:  # named by the file asked for, not by the temporary one
        raise type(e)(e.errno, f"cannot write in {path.parent} ({e.strerror})", str(path)) from None
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
    """Read a JSON file; one that is empty, cut short or not UTF-8 is a ``ValueError`` naming it."""
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except UnicodeDecodeError as e:
        raise ValueError(f"{path} is not UTF-8 text ({e.reason} at byte {e.start})") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        what = "it is empty" if not text.strip() else f"{e.msg} at line {e.lineno}, column {e.colno}"
        raise ValueError(f"{path} is not valid JSON: {what}") from None


# --- manifests ------------------------------------------------------------------------------
def _manifest_path(target: Path) -> Path:
    return target / MANIFEST if target.is_dir() else target.with_name(f"{target.name}.manifest.json")


def _digest(path: Path, size: int) -> str:
    """sha256 of the whole file, or of its first and last ``END_BYTES`` when it is large."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        if size <= FULL_HASH_LIMIT:
            h.update(f.read())
        else:
            h.update(f.read(END_BYTES))
            f.seek(-END_BYTES, os.SEEK_END)
            h.update(f.read())
    return h.hexdigest()


def _present(target: Path) -> dict[str, Path]:
    """Name in the manifest -> path, for every file of ``target`` (a folder, or one file)."""
    if not target.is_dir():
        return {target.name: target} if target.is_file() else {}
    files = (p for p in sorted(target.rglob("*")) if p.is_file())
    return {p.relative_to(target).as_posix(): p for p in files if p != target / MANIFEST}


def seal(target: str | Path) -> Path:
    """Write the manifest of ``target`` (a folder: every file in it; a file: itself), atomically.

    Called last, once everything else is written: an entry without a manifest is never trusted.
    """
    target = Path(target)
    files = {name: {"size": p.stat().st_size, "sha256": _digest(p, p.stat().st_size)}
             for name, p in _present(target).items()}
    return atomic_write_json(_manifest_path(target), {"files": files})


def problem(target: str | Path) -> str | None:
    """What is wrong with the existing ``target`` against its manifest, naming the file (None: intact)."""
    target = Path(target)
    manifest = _manifest_path(target)
    try:
        recorded = json.loads(manifest.read_text(encoding="utf-8"))["files"]
    except FileNotFoundError:
        return f"it has no manifest {manifest.name} (built by an older retrlab, or not by retrlab)"
    except (ValueError, KeyError, TypeError):
        return f"its manifest {manifest.name} is unreadable"
    present = _present(target)
    extra = sorted(set(present) - set(recorded))
    if extra:
        return f"{extra[0]} is not in its manifest"
    for name, want in recorded.items():
        if name not in present:
            return f"{name} is missing"
        size = present[name].stat().st_size
        if size != want["size"]:
            return f"{name} has {size} bytes{' (empty)' if size == 0 else ''}, the manifest says {want['size']}"
        if _digest(present[name], size) != want["sha256"]:
            return f"{name} changed since it was built (its sha256 differs from the manifest's)"
    return None


def intact(target: str | Path) -> bool:
    """True when ``target`` exists and matches its manifest.

    A damaged entry gives a :class:`CacheRebuildWarning` naming the file and returns False: the
    caller rebuilds it (and seals the new one).
    """
    target = Path(target)
    if not target.exists():
        return False
    why = problem(target)
    if why is not None:
        warnings.warn(f"cache entry {target} is damaged: {why}; rebuilding it", CacheRebuildWarning,
                      stacklevel=3)
    return why is None


# --- cached folders -----------------------------------------------------------------------------
def cached_dir(name: str, build: Callable[[Path], None], *, rebuild: bool = False) -> Path:
    """Return ``home()/name``, building it first if absent or damaged (see the module docstring).

    ``build(tmp_dir)`` fills a fresh temporary folder; the manifest is written after it returns,
    and the folder renamed to its final name only then, so an interrupted build never leaves a
    folder that looks finished.
    """
    if not name or Path(name).is_absolute() or ".." in Path(name).parts:
        raise ValueError(f"cache name must be a non-empty relative path inside {home()}, got {name!r}")
    final = home() / name
    if not rebuild and final.is_dir() and intact(final):
        return final
    _make_writable_folder(final.parent, name)
    remove_abandoned(final)
    # the builder's process id in the name tells a later build whether this folder was abandoned
    tmp = Path(tempfile.mkdtemp(dir=final.parent, prefix=f".{final.name}.{os.getpid()}.", suffix=".tmp"))
    try:
        build(tmp)
        seal(tmp)
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return final


def _make_writable_folder(folder: Path, name: str) -> None:
    """Create ``folder`` if needed; a cache that cannot be written fails here, before the build."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise CacheError(f"cannot build {name}: cannot create {folder} ({e.strerror}); set RETRLAB_HOME "
                         f"to a writable folder") from None
    reason = _unwritable(folder)
    if reason:
        raise CacheError(f"cannot build {name}: the cache folder {folder} is not writable ({reason}); "
                         f"set RETRLAB_HOME to a writable folder")


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
