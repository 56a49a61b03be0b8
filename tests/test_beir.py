"""Tests for retrlab.data.beir: loading a hand-written BEIR folder, its errors, and downloads."""
from __future__ import annotations

import hashlib
import http.server
import io
import json
import threading
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from retrlab.data.beir import (
    ChecksumError,
    DataFormatError,
    DownloadError,
    download_beir,
    load_beir,
)

CORPUS = [
    {"_id": "d1", "title": "Cats", "text": "Cats purr."},
    {"_id": "d2", "title": "Dogs", "text": "Dogs bark.", "metadata": {"url": "x"}},
    {"_id": "d3", "title": "", "text": "Fish swim."},
    {"_id": "d4", "title": "Birds only"},  # filled in below: empty text, non-empty title
    {"_id": "d5", "title": "Cows", "text": "Cows moo."},
]
CORPUS[3]["text"] = ""
QUERIES = [
    {"_id": "q1", "text": "what do cats do", "metadata": {}},
    {"_id": "q2", "text": "barking animals"},
    {"_id": "q3", "text": "swimming"},
]
TEST_QRELS = ["q2\td2\t1", "q1\td1\t2", "q1\td5\t1", "q1\td3\t0"]
DEV_QRELS = ["q3\td3\t1", "q3\td4\t0"]
HEADER = "query-id\tcorpus-id\tscore"


def _jsonl(records: list[dict]) -> str:
    return "".join(json.dumps(r) + "\n" for r in records)


def _tsv(rows: list[str]) -> str:
    return "".join(f"{r}\n" for r in [HEADER, *rows])


def write_beir(folder: Path, corpus: str | None = None, queries: str | None = None,
               test: str | None = None, dev: str | None = None) -> Path:
    """The tiny dataset (5 passages, 3 queries, test + dev qrels), any file replaceable."""
    (folder / "qrels").mkdir(parents=True)
    (folder / "corpus.jsonl").write_text(corpus if corpus is not None else _jsonl(CORPUS))
    (folder / "queries.jsonl").write_text(queries if queries is not None else _jsonl(QUERIES))
    (folder / "qrels" / "test.tsv").write_text(test if test is not None else _tsv(TEST_QRELS))
    (folder / "qrels" / "dev.tsv").write_text(dev if dev is not None else _tsv(DEV_QRELS))
    return folder


@pytest.fixture
def tiny(tmp_path: Path) -> Path:
    return write_beir(tmp_path / "tiny")


# --- loading ----------------------------------------------------------------------------------
def test_load_exact_contents(tiny: Path) -> None:
    data = load_beir(tiny)
    assert data.name == "tiny"
    assert data.pids == ["d1", "d2", "d3", "d4", "d5"]
    assert data.corpus["d2"] == {"title": "Dogs", "text": "Dogs bark.", "metadata": {"url": "x"}}
    assert data.corpus["d4"] == {"title": "Birds only", "text": ""}
    assert data.passage_text("d1") == "Cats: Cats purr."
    assert data.passage_text("d3") == "Fish swim."
    assert data.queries == {"q1": "what do cats do", "q2": "barking animals", "q3": "swimming"}
    assert data.splits == {"dev": ["q3"], "test": ["q2", "q1"]}  # no train file: skipped
    assert data.qrels == {"q2": {"d2": 1}, "q1": {"d1": 2, "d5": 1}, "q3": {"d3": 1}}
    assert data.positives == {"q2": ["d2"], "q1": ["d1", "d5"], "q3": ["d3"]}
    assert all(not data.hidden_positives(q) for q in data.queries)  # BEIR: labels are the truth


def test_load_only_requested_splits(tiny: Path) -> None:
    data = load_beir(tiny, splits=("test",))
    assert data.splits == {"test": ["q2", "q1"]}
    assert "q3" not in data.qrels


def test_query_with_only_zero_grades_is_not_in_split(tmp_path: Path) -> None:
    folder = write_beir(tmp_path / "t", dev=_tsv(["q3\td4\t0"]))
    with pytest.warns(UserWarning, match=r"dev\.tsv: no row has a score > 0, so split 'dev' is empty"):
        data = load_beir(folder)
    assert data.splits["dev"] == []
    assert "q3" not in data.qrels and "q3" not in data.positives


def test_blank_lines_and_crlf_are_tolerated(tmp_path: Path) -> None:
    folder = write_beir(tmp_path / "t", test=_tsv(TEST_QRELS).replace("\n", "\r\n") + "\n\n")
    assert load_beir(folder).qrels["q1"] == {"d1": 2, "d5": 1}


def _error(folder: Path, match: str, error: type[Exception] = DataFormatError) -> str:
    with pytest.raises(error, match=match) as info:
        load_beir(folder)
    return str(info.value)


def test_missing_folder(tmp_path: Path) -> None:
    _error(tmp_path / "nope", r"folder not found: .*nope", FileNotFoundError)


@pytest.mark.parametrize("file", ["corpus.jsonl", "queries.jsonl"])
def test_missing_file(tiny: Path, file: str) -> None:
    (tiny / file).unlink()
    _error(tiny, rf"not found: .*{file}", FileNotFoundError)


def test_no_qrels_file(tiny: Path) -> None:
    for split in ("test", "dev"):
        (tiny / "qrels" / f"{split}.tsv").unlink()
    _error(tiny, r"no qrels file in .*qrels", FileNotFoundError)


def test_malformed_json(tmp_path: Path) -> None:
    text = _jsonl(CORPUS[:2]) + '{"_id": "d3", "text": \n'
    _error(write_beir(tmp_path / "t", corpus=text), r"corpus\.jsonl:3: malformed JSON")


def test_json_not_an_object(tmp_path: Path) -> None:
    text = _jsonl(QUERIES) + "[1, 2]\n"
    _error(write_beir(tmp_path / "t", queries=text), r"queries\.jsonl:4: expected a JSON object")


@pytest.mark.parametrize("field", ["_id", "text"])
def test_missing_field_in_corpus(tmp_path: Path, field: str) -> None:
    records = [dict(r) for r in CORPUS]
    del records[1][field]
    _error(write_beir(tmp_path / "t", corpus=_jsonl(records)),
           rf"corpus\.jsonl:2: missing field '{field}'")


@pytest.mark.parametrize("field", ["_id", "text"])
def test_missing_field_in_queries(tmp_path: Path, field: str) -> None:
    records = [dict(r) for r in QUERIES]
    del records[2][field]
    _error(write_beir(tmp_path / "t", queries=_jsonl(records)),
           rf"queries\.jsonl:3: missing field '{field}'")


def test_duplicate_corpus_id(tmp_path: Path) -> None:
    text = _jsonl(CORPUS) + _jsonl([{"_id": "d2", "title": "", "text": "again"}])
    _error(write_beir(tmp_path / "t", corpus=text),
           r"corpus\.jsonl:6: duplicate _id 'd2' \(first on line 2\)")


def test_duplicate_query_id(tmp_path: Path) -> None:
    text = _jsonl(QUERIES) + _jsonl([{"_id": "q1", "text": "again"}])
    _error(write_beir(tmp_path / "t", queries=text),
           r"queries\.jsonl:4: duplicate _id 'q1' \(first on line 1\)")


def test_empty_passage(tmp_path: Path) -> None:
    text = _jsonl(CORPUS) + _jsonl([{"_id": "d6", "title": " ", "text": "  "}])
    _error(write_beir(tmp_path / "t", corpus=text),
           r"corpus\.jsonl:6: passage 'd6' has empty text and title")


def test_empty_query(tmp_path: Path) -> None:
    text = _jsonl([*QUERIES[:1], {"_id": "q2", "text": ""}, *QUERIES[2:]])
    _error(write_beir(tmp_path / "t", queries=text), r"queries\.jsonl:2: query 'q2' has empty text")


def test_qrels_wrong_column_count(tmp_path: Path) -> None:
    test = _tsv([TEST_QRELS[0], "q1\td1"])
    _error(write_beir(tmp_path / "t", test=test), r"test\.tsv:3: expected 3 tab-separated columns")


def test_qrels_space_separated_row(tmp_path: Path) -> None:
    test = _tsv([TEST_QRELS[0], "q1 d1 1"])
    _error(write_beir(tmp_path / "t", test=test), r"test\.tsv:3: expected 3 .* got 1")


def test_qrels_non_integer_score(tmp_path: Path) -> None:
    test = _tsv([*TEST_QRELS[:2], "q1\td5\t0.5"])
    _error(write_beir(tmp_path / "t", test=test), r"test\.tsv:4: score '0\.5' is not an integer")


def test_qrels_missing_header(tmp_path: Path) -> None:
    test = "".join(f"{r}\n" for r in TEST_QRELS)
    _error(write_beir(tmp_path / "t", test=test), r"test\.tsv:1: expected the header")


def test_qrels_unknown_query_id(tmp_path: Path) -> None:
    dev = _tsv([DEV_QRELS[0], "q9\td1\t1"])
    _error(write_beir(tmp_path / "t", dev=dev), r"dev\.tsv:3: unknown query id 'q9'")


def test_qrels_unknown_corpus_id(tmp_path: Path) -> None:
    test = _tsv([*TEST_QRELS, "q2\td42\t0"])  # even a 0-graded row must name a real passage
    _error(write_beir(tmp_path / "t", test=test), r"test\.tsv:6: unknown corpus id 'd42'")


def test_qrels_conflicting_grades(tmp_path: Path) -> None:
    test = _tsv([*TEST_QRELS, "q1\td1\t1"])
    _error(write_beir(tmp_path / "t", test=test), r"test\.tsv:6: \('q1', 'd1'\) graded 1 here")


# --- downloading ------------------------------------------------------------------------------
class _Server:
    """Files served from memory over HTTP on 127.0.0.1, counting requests."""

    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}
        self.requests: list[str] = []
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
                server.requests.append(self.path)
                body = server.files.get(self.path)
                if body is None:
                    self.send_error(404, "Not Found")
                    return
                self.send_response(200)
                self.send_header("Content-Type", "application/zip")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True)


@pytest.fixture
def server() -> Iterator[_Server]:
    srv = _Server()
    srv.thread.start()
    yield srv
    srv.httpd.shutdown()
    srv.httpd.server_close()
    srv.thread.join(timeout=5)


def _zip_folder(folder: Path, top: str | None) -> bytes:
    """A zip like BEIR's: every file under one top folder named ``top`` (None: no top folder)."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for path in sorted(folder.rglob("*")):
            if path.is_file():
                member = path.relative_to(folder).as_posix()
                zf.write(path, member if top is None else f"{top}/{member}")
    return buf.getvalue()


def _md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


@pytest.fixture
def tiny_zip(tmp_path: Path) -> bytes:
    return _zip_folder(write_beir(tmp_path / "src" / "tiny"), "tiny")


def test_download_then_load(server: _Server, tiny_zip: bytes, tmp_path: Path) -> None:
    server.files["/tiny.zip"] = tiny_zip
    dest = tmp_path / "cache"
    folder = download_beir("tiny", dest=dest, base_url=server.url, md5=_md5(tiny_zip))
    assert folder == dest / "tiny"
    assert server.requests == ["/tiny.zip"]
    assert sorted(p.name for p in dest.iterdir()) == ["tiny"]  # no temp files left
    data = load_beir(folder)
    assert data.qrels == {"q2": {"d2": 1}, "q1": {"d1": 2, "d5": 1}, "q3": {"d3": 1}}
    assert data.splits == {"dev": ["q3"], "test": ["q2", "q1"]}


def test_second_download_does_not_hit_server(server: _Server, tiny_zip: bytes,
                                             tmp_path: Path) -> None:
    server.files["/tiny.zip"] = tiny_zip
    first = download_beir("tiny", dest=tmp_path, base_url=server.url, md5=_md5(tiny_zip))
    server.files.clear()  # a second request would now 404
    second = download_beir("tiny", dest=tmp_path, base_url=server.url, md5=_md5(tiny_zip))
    assert first == second and len(server.requests) == 1


def test_download_flat_zip(server: _Server, tmp_path: Path) -> None:
    body = _zip_folder(write_beir(tmp_path / "src"), top=None)  # files at the zip's top level
    server.files["/tiny.zip"] = body
    folder = download_beir("tiny", dest=tmp_path / "d", base_url=server.url, md5=_md5(body))
    assert folder == tmp_path / "d" / "tiny"
    assert load_beir(folder).name == "tiny"


def test_wrong_md5_leaves_nothing(server: _Server, tiny_zip: bytes, tmp_path: Path) -> None:
    server.files["/tiny.zip"] = tiny_zip
    dest = tmp_path / "cache"
    with pytest.raises(ChecksumError, match=f"expected {'0' * 32}, got {_md5(tiny_zip)}"):
        download_beir("tiny", dest=dest, base_url=server.url, md5="0" * 32)
    assert list(dest.iterdir()) == []


def test_unknown_md5_is_refused_before_the_download(server: _Server, tiny_zip: bytes,
                                                    tmp_path: Path) -> None:
    server.files["/tiny.zip"] = tiny_zip
    with pytest.raises(ChecksumError, match=r"no known md5 for BEIR dataset 'tiny': pass md5=.* or verify=False"):
        download_beir("tiny", dest=tmp_path / "d", base_url=server.url)
    assert server.requests == [] and not (tmp_path / "d").exists()


def test_verify_false_downloads_unchecked_and_warns_with_computed_sum(server: _Server, tiny_zip: bytes,
                                                                     tmp_path: Path) -> None:
    server.files["/tiny.zip"] = tiny_zip
    with pytest.warns(UserWarning, match=f"downloaded unchecked .* its md5 is {_md5(tiny_zip)}"):
        folder = download_beir("tiny", dest=tmp_path, base_url=server.url, verify=False)
    assert (folder / "corpus.jsonl").is_file()


def test_404_is_a_clear_error(server: _Server, tmp_path: Path) -> None:
    with pytest.raises(DownloadError, match=r"missing\.zip failed: HTTP 404"):
        download_beir("missing", dest=tmp_path, base_url=server.url, md5="0" * 32)
    assert list(tmp_path.iterdir()) == []


def test_zip_slip_is_rejected(server: _Server, tmp_path: Path) -> None:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("evil/corpus.jsonl", _jsonl(CORPUS))
        zf.writestr("../evil", "pwned")
    body = buf.getvalue()
    server.files["/evil.zip"] = body
    dest = tmp_path / "cache"
    with pytest.raises(DownloadError, match=r"unsafe path in zip archive: '\.\./evil'"):
        download_beir("evil", dest=dest, base_url=server.url, md5=_md5(body))
    assert list(dest.iterdir()) == []
    assert not (tmp_path / "evil").exists()


def test_a_zip_bomb_is_refused_before_extraction(server: _Server, tmp_path: Path) -> None:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("bomb/corpus.jsonl", bytes(4 * 2**20))  # 4 MiB of zeros, ~4 KB compressed
    body = buf.getvalue()
    assert len(body) < 2**14
    server.files["/bomb.zip"] = body
    dest = tmp_path / "cache"
    with pytest.raises(DownloadError, match=r"would unpack to 4,194,304 bytes, more than the limit of 1,048,576"):
        download_beir("bomb", dest=dest, base_url=server.url, md5=_md5(body), max_bytes=2**20)
    assert list(dest.iterdir()) == []
    folder = download_beir("bomb", dest=dest, base_url=server.url, md5=_md5(body))  # the default cap: 20 GiB
    assert (folder / "corpus.jsonl").stat().st_size == 4 * 2**20


def test_an_archive_of_too_many_files_is_refused(server: _Server, tmp_path: Path) -> None:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for i in range(11):
            zf.writestr(f"many/f{i}.txt", "x")
    body = buf.getvalue()
    server.files["/many.zip"] = body
    with pytest.raises(DownloadError, match=r"zip archive has 11 members, more than the limit of 10"):
        download_beir("many", dest=tmp_path, base_url=server.url, md5=_md5(body), max_members=10)
    assert list(tmp_path.iterdir()) == []


def test_not_a_zip(server: _Server, tmp_path: Path) -> None:
    server.files["/bad.zip"] = b"not a zip"
    with pytest.raises(DownloadError, match="not a valid zip"):
        download_beir("bad", dest=tmp_path, base_url=server.url, md5=_md5(b"not a zip"))
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("name", ["", "..", "a/b"])
def test_invalid_name(name: str, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="invalid BEIR dataset name"):
        download_beir(name, dest=tmp_path)
