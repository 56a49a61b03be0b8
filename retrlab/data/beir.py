"""Load (and download) datasets in the BEIR format.

BEIR (Thakur et al., "BEIR: A Heterogeneous Benchmark for Zero-shot Evaluation of Information
Retrieval Models", NeurIPS 2021 Datasets & Benchmarks track, https://github.com/beir-cellar/beir)
ships every dataset as one folder::

    corpus.jsonl        {"_id": ..., "title": ..., "text": ..., ...}  one passage per line
    queries.jsonl       {"_id": ..., "text": ...}                     one query per line
    qrels/{split}.tsv   query-id <TAB> corpus-id <TAB> score           after one header line

:func:`load_beir` turns such a folder into a :class:`~retrlab.data.dataset.RetrievalData`.
BEIR's relevance judgements are the whole truth we have, so there are no hidden positives:
``positives[qid]`` lists exactly the passages of ``qrels[qid]``. Judgements with a score of 0
(or below) mean "judged, not relevant"; since ``RetrievalData`` treats every passage in
``qrels[qid]`` as relevant, they are validated but left out of both.

:func:`download_beir` fetches one of the official zips, checks its md5 against the sum BEIR
publishes and extracts it atomically into the retrlab cache. Two rules keep a download from doing
harm: a dataset whose md5 is not known (not in :data:`KNOWN_MD5`, no ``md5=`` given) is refused
before anything is fetched unless the caller opts out with ``verify=False``; and an archive whose
members would unpack to more than :data:`MAX_EXTRACT_BYTES` (20 GiB; BEIR's largest zip here,
msmarco, unpacks to about 3 GB) or hold more than :data:`MAX_MEMBERS` (10,000) files is refused
before extraction (a "zip bomb"). ``zipfile`` never writes more than a member's declared size (a
member that inflates beyond it fails its CRC check), so the declared sizes can be trusted.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import urllib.error
import urllib.request
import warnings
import zipfile
from collections.abc import Iterator
from pathlib import Path, PurePosixPath

from tqdm.auto import tqdm

from retrlab import cache
from retrlab.data.dataset import SPLITS, RetrievalData

BEIR_URL = "https://public.ukp.informatik.tu-darmstadt.de/thakur/BEIR/datasets"

# md5 sums of the official zips, as published in the table of the BEIR README
# (https://github.com/beir-cellar/beir#beers-available-datasets).
KNOWN_MD5: dict[str, str] = {
    "scifact": "5f7d1de60b170fc8027bb7898e2efca1",
    "nfcorpus": "a89dba18a62ef92f7d323ec890a0d38d",
    "fiqa": "17918ed23cd04fb15047f73e6c3bd9d9",
    "arguana": "8ad3e3c2a5867cdced806d6503f29b99",
    "scidocs": "38121350fc3a4d2f48850f6aff52e4a9",
    "trec-covid": "ce62140cb23feb9becf6270d0d1fe6d1",
    "webis-touche2020": "46f650ba5a527fc69e0a6521c5a23563",
    "quora": "18fb154900ba42a600f84b839c173167",
    "nq": "d4d3d2e48787a744b6f6e691ff534307",
    "hotpotqa": "f412724f78b0d91183a0e86805e16114",
    "msmarco": "444067daf65d982533ea17ebd59501e4",
}

QRELS_HEADER = ("query-id", "corpus-id", "score")
MAX_EXTRACT_BYTES = 20 * 2**30  # total uncompressed size of an archive's members
MAX_MEMBERS = 10_000  # files and folders in one archive


class DataFormatError(ValueError):
    """A BEIR file is malformed; the message names the file and the line."""


class DownloadError(RuntimeError):
    """A download failed (HTTP error, unreachable server, bad archive)."""


class ChecksumError(DownloadError):
    """The downloaded file's md5 is not the expected one."""


# --- loading ----------------------------------------------------------------------------------
def load_beir(folder: str | Path, splits: tuple[str, ...] | list[str] = SPLITS) -> RetrievalData:
    """Load a BEIR-format folder; splits whose ``qrels/{split}.tsv`` is absent are skipped.

    ``splits[s]`` lists, in file order, the queries with at least one relevant passage in
    ``qrels/{s}.tsv``. Raises :class:`DataFormatError` (naming file, line and id) on bad input
    and :class:`FileNotFoundError` when the folder, a file or every qrels file is missing.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"BEIR folder not found: {folder}")
    corpus = _read_corpus(_require_file(folder / "corpus.jsonl"))
    queries = _read_queries(_require_file(folder / "queries.jsonl"))
    qrel_files = {s: folder / "qrels" / f"{s}.tsv" for s in splits}
    qrel_files = {s: p for s, p in qrel_files.items() if p.is_file()}
    if not qrel_files:
        raise FileNotFoundError(f"no qrels file in {folder / 'qrels'} for splits {list(splits)} "
                                f"(expected e.g. {folder / 'qrels' / 'test.tsv'})")
    qrels: dict[str, dict[str, int]] = {}
    split_qids: dict[str, list[str]] = {}
    judged_in: dict[str, Path] = {}  # qid -> the qrels file that judged it first
    for split, path in qrel_files.items():
        split_qids[split] = _read_qrels(path, queries, corpus, qrels, judged_in)
        if not split_qids[split]:
            warnings.warn(f"{path}: no row has a score > 0, so split {split!r} is empty (a score of 0 "
                          f"means judged not relevant)", stacklevel=2)
    positives = {qid: list(grades) for qid, grades in qrels.items()}
    return RetrievalData(folder.name, corpus, queries, qrels, positives, split_qids)


def _require_file(path: Path) -> Path:
    if not path.is_file():
        raise FileNotFoundError(f"BEIR file not found: {path}")
    return path


def _lines(path: Path) -> Iterator[tuple[int, str]]:
    """(1-based line number, line without its end) for each non-blank line, streamed.

    Lines are decoded one by one (a text-mode file decodes ahead in blocks), so a byte that is not
    UTF-8 is reported on its own line; a UTF-8 byte-order mark at the start is skipped.
    """
    with open(path, "rb") as f:
        for lineno, raw in enumerate(f, start=1):
            try:
                line = raw.decode("utf-8-sig" if lineno == 1 else "utf-8").rstrip("\r\n")
            except UnicodeDecodeError as e:
                raise DataFormatError(f"{path}:{lineno}: not UTF-8 text ({e.reason} at byte "
                                      f"{e.start} of the line)") from None
            if line.strip():
                yield lineno, line


def _jsonl(path: Path) -> Iterator[tuple[int, str, dict]]:
    """(line number, ``_id`` as str, record) for each line of a BEIR ``.jsonl`` file."""
    for lineno, line in _lines(path):
        try:
            record = json.loads(line)
        except json.JSONDecodeError as e:
            raise DataFormatError(f"{path}:{lineno}: malformed JSON ({e.msg})") from None
        if not isinstance(record, dict):
            raise DataFormatError(f"{path}:{lineno}: expected a JSON object, got "
                                  f"{type(record).__name__}")
        for key in ("_id", "text"):
            if key not in record:
                raise DataFormatError(f"{path}:{lineno}: missing field {key!r}")
        if not isinstance(record["text"], str):
            raise DataFormatError(f"{path}:{lineno}: field 'text' must be a string")
        id_ = record["_id"]
        if isinstance(id_, bool) or not isinstance(id_, (str, int)) or not str(id_).strip():
            raise DataFormatError(f"{path}:{lineno}: field '_id' must be a non-empty string or an "
                                  f"integer, got {id_!r}")
        yield lineno, str(id_), record


def _check_new_id(path: Path, lineno: int, id_: str, seen: dict[str, int]) -> None:
    if id_ in seen:
        raise DataFormatError(f"{path}:{lineno}: duplicate _id {id_!r} (first on line {seen[id_]})")
    seen[id_] = lineno


def _read_corpus(path: Path) -> dict[str, dict]:
    corpus: dict[str, dict] = {}
    seen: dict[str, int] = {}
    for lineno, pid, record in _jsonl(path):
        _check_new_id(path, lineno, pid, seen)
        title = record.get("title") or ""
        if not isinstance(title, str):
            raise DataFormatError(f"{path}:{lineno}: field 'title' must be a string")
        if not record["text"].strip() and not title.strip():
            raise DataFormatError(f"{path}:{lineno}: passage {pid!r} has empty text and title")
        extra = {k: v for k, v in record.items() if k not in ("_id", "title", "text")}
        corpus[pid] = {"title": title, "text": record["text"], **extra}
    return corpus


def _read_queries(path: Path) -> dict[str, str]:
    queries: dict[str, str] = {}
    seen: dict[str, int] = {}
    for lineno, qid, record in _jsonl(path):
        _check_new_id(path, lineno, qid, seen)
        if not record["text"].strip():
            raise DataFormatError(f"{path}:{lineno}: query {qid!r} has empty text")
        queries[qid] = record["text"]
    return queries


def _qrels_rows(path: Path) -> Iterator[tuple[int, str, str, int]]:
    """(line number, qid, pid, score) for each row of a qrels TSV, after its header."""
    rows = _lines(path)
    header = next(rows, None)
    if header is None:
        raise DataFormatError(f"{path}:1: empty qrels file (expected header "
                              f"{chr(9).join(QRELS_HEADER)!r})")
    lineno, line = header
    if len(line.split("\t")) != 3 or _is_int(line.split("\t")[2]):
        raise DataFormatError(f"{path}:{lineno}: expected the header "
                              f"{chr(9).join(QRELS_HEADER)!r}, got {line!r}")
    for lineno, line in rows:
        cols = line.split("\t")
        if len(cols) != 3:
            raise DataFormatError(f"{path}:{lineno}: expected 3 tab-separated columns "
                                  f"(query-id, corpus-id, score), got {len(cols)}: {line!r}")
        qid, pid, score = (c.strip() for c in cols)
        if not _is_int(score):
            raise DataFormatError(f"{path}:{lineno}: score {score!r} is not an integer")
        yield lineno, qid, pid, int(score)


def _is_int(text: str) -> bool:
    try:
        int(text.strip())
    except ValueError:
        return False
    return True


def _read_qrels(path: Path, queries: dict[str, str], corpus: dict[str, dict],
                qrels: dict[str, dict[str, int]], judged_in: dict[str, Path]) -> list[str]:
    """Add the relevant (score > 0) rows of ``path`` to ``qrels``; return the split's qids.

    A query judged in another split's file too is an error (``judged_in`` remembers where each
    query was judged): merging the two would evaluate a split on judgements of another.
    """
    qids: dict[str, None] = {}  # an ordered set
    for lineno, qid, pid, score in _qrels_rows(path):
        if qid not in queries:
            raise DataFormatError(f"{path}:{lineno}: unknown query id {qid!r} "
                                  f"(not in queries.jsonl)")
        if pid not in corpus:
            raise DataFormatError(f"{path}:{lineno}: unknown corpus id {pid!r} "
                                  f"(not in corpus.jsonl)")
        if judged_in.setdefault(qid, path) != path:
            raise DataFormatError(f"{path}:{lineno}: query {qid!r} is also judged in {judged_in[qid]}: "
                                  f"a query belongs to one split")
        if score <= 0:
            continue
        grades = qrels.setdefault(qid, {})
        if grades.get(pid, score) != score:
            raise DataFormatError(f"{path}:{lineno}: ({qid!r}, {pid!r}) graded {score} here "
                                  f"but {grades[pid]} earlier")
        grades[pid] = score
        qids[qid] = None
    return list(qids)


# --- downloading ------------------------------------------------------------------------------
def download_beir(name: str, dest: str | Path | None = None, *, base_url: str = BEIR_URL,
                  md5: str | None = None, verify: bool = True, timeout: float = 30,
                  max_bytes: int = MAX_EXTRACT_BYTES, max_members: int = MAX_MEMBERS) -> Path:
    """Download ``{base_url}/{name}.zip`` and extract it to ``dest/name`` (default: the cache).

    Returns the folder at once, without network, if it already exists. The zip's md5 is checked
    against ``md5`` (default: :data:`KNOWN_MD5`). A dataset with no known md5 is refused before
    the download unless ``md5`` is given or ``verify=False`` (then nothing is checked and the
    computed sum is reported in a warning). An archive larger than ``max_bytes`` unpacked, or with
    more than ``max_members`` entries, is refused. The download and extraction happen under
    temporary names in ``dest``: on any failure nothing is left behind.
    """
    if not name or "/" in name or "\\" in name or name in (".", ".."):
        raise ValueError(f"invalid BEIR dataset name {name!r}")
    expected = (md5 or KNOWN_MD5.get(name)) if verify else None
    if verify and expected is None:
        raise ChecksumError(f"no known md5 for BEIR dataset {name!r}: pass md5='...' (the sum its "
                            f"publisher gives), or verify=False to download it unchecked")
    dest = Path(dest) if dest is not None else cache.home() / "beir"
    final = dest / name
    if final.is_dir():
        return final
    dest.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=dest, prefix=f".{name}.", suffix=".zip.part")
    os.close(fd)
    tmp_zip = Path(tmp_name)
    try:
        got = _fetch(f"{base_url.rstrip('/')}/{name}.zip", tmp_zip, timeout)
        _verify_md5(name, expected, got)
        return _extract_into_place(tmp_zip, name, final, max_bytes, max_members)
    finally:
        tmp_zip.unlink(missing_ok=True)


def _fetch(url: str, path: Path, timeout: float) -> str:
    """Stream ``url`` into ``path`` with a progress bar; return the md5 hex digest."""
    digest = hashlib.md5()
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response, open(path, "wb") as f:
            total = int(response.headers.get("Content-Length") or 0) or None
            with tqdm(total=total, unit="B", unit_scale=True, unit_divisor=1024,
                      desc=Path(url).name) as bar:
                while chunk := response.read(1 << 20):
                    f.write(chunk)
                    digest.update(chunk)
                    bar.update(len(chunk))
    except urllib.error.HTTPError as e:
        raise DownloadError(f"download of {url} failed: HTTP {e.code} {e.reason}") from e
    except urllib.error.URLError as e:
        raise DownloadError(f"download of {url} failed: {e.reason}") from e
    except TimeoutError as e:
        raise DownloadError(f"download of {url} timed out after {timeout}s") from e
    return digest.hexdigest()


def _verify_md5(name: str, expected: str | None, got: str) -> None:
    if expected is None:
        warnings.warn(f"BEIR dataset {name!r} downloaded unchecked (verify=False); its md5 is {got} "
                      f"(pass md5={got!r} to check it next time)", stacklevel=3)
    elif expected.lower() != got:
        raise ChecksumError(f"md5 mismatch for {name}.zip: expected {expected}, got {got}")


def _safe_members(zf: zipfile.ZipFile, root: Path, max_bytes: int, max_members: int) -> list[zipfile.ZipInfo]:
    """The archive's members, after checking that none would land outside ``root`` and that they
    are not too many or too large unpacked."""
    members = zf.infolist()
    if len(members) > max_members:
        raise DownloadError(f"zip archive has {len(members)} members, more than the limit of "
                            f"{max_members}: refused")
    total = sum(info.file_size for info in members)
    if total > max_bytes:
        raise DownloadError(f"zip archive would unpack to {total:,} bytes, more than the limit of "
                            f"{max_bytes:,}: refused (pass max_bytes= to allow more)")
    root = root.resolve()
    for info in members:
        parts = PurePosixPath(info.filename.replace("\\", "/"))
        target = (root / parts).resolve()
        if parts.is_absolute() or ".." in parts.parts or not target.is_relative_to(root):
            raise DownloadError(f"unsafe path in zip archive: {info.filename!r} "
                                f"escapes the extraction folder")
    return members


def _extract_into_place(zip_path: Path, name: str, final: Path, max_bytes: int, max_members: int) -> Path:
    """Extract into a temporary folder next to ``final``, then rename the dataset into place.

    BEIR zips hold one top folder named after the dataset; a zip with the files at its top
    level is accepted too.
    """
    tmp_dir = Path(tempfile.mkdtemp(dir=final.parent, prefix=f".{name}.", suffix=".tmp"))
    try:
        try:
            with zipfile.ZipFile(zip_path) as zf:
                zf.extractall(tmp_dir, members=_safe_members(zf, tmp_dir, max_bytes, max_members))
        except zipfile.BadZipFile as e:
            raise DownloadError(f"{name}.zip is not a valid zip archive: {e}") from e
        root = tmp_dir / name if (tmp_dir / name).is_dir() else tmp_dir
        try:
            os.rename(root, final)
        except OSError:
            if not final.is_dir():  # lost a race with another download? then use theirs
                raise
    finally:
        shutil.rmtree(tmp_dir, ignore_errors=True)
    return final
