"""Reliability II: a cache verified on load, and inputs that used to crash or lie.

The cache cases damage a built entry the ways a user or a crash does (a file deleted, cut short,
emptied, edited, added; the manifest gone) and check that the entry is rebuilt with a warning that
names the file, never read as it is (``FAULTS``). Every test here but two (the manifest's contents,
a new path that is writable) tries one bad input or fault; with ``len(CASES)`` of
tests/test_bad_inputs.py they make the count of bad inputs the suite tries.
"""
from __future__ import annotations

import hashlib
import json
import shutil
import tempfile
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from test_beir import QUERIES, _jsonl, _tsv, write_beir

from retrlab import artifacts, cache, evaluation
from retrlab.cache import CacheError, CacheRebuildWarning, cached_dir, check_writable, intact, seal
from retrlab.cli import main
from retrlab.data import wikicar
from retrlab.data.beir import load_beir
from retrlab.metrics import evaluate, read_trec_run
from retrlab.pool import bm25_pool, pool_from_ranking
from retrlab.viz.widgets import DistributionView, SimilarityExplorer


# --- manifests of cached folders --------------------------------------------------------------
def build_two_files(folder: Path) -> None:
    (folder / "a.json").write_text('{"x": 1}')
    (folder / "sub").mkdir()
    (folder / "sub" / "b.bin").write_bytes(bytes(range(10)))


def test_a_cached_folder_carries_a_manifest_of_every_file(home):
    folder = cached_dir("thing", build_two_files)
    manifest = json.loads((folder / cache.MANIFEST).read_text())
    assert manifest == {"files": {
        "a.json": {"size": 8, "sha256": hashlib.sha256(b'{"x": 1}').hexdigest()},
        "sub/b.bin": {"size": 10, "sha256": hashlib.sha256(bytes(range(10))).hexdigest()}}}
    assert cache.problem(folder) is None


def _delete(folder: Path) -> None:
    (folder / "sub" / "b.bin").unlink()


def _truncate(folder: Path) -> None:
    (folder / "a.json").write_text('{"x":')


def _empty(folder: Path) -> None:
    (folder / "a.json").write_text("")


def _same_size_edit(folder: Path) -> None:
    (folder / "a.json").write_text('{"x": 2}')


def _extra_file(folder: Path) -> None:
    (folder / "sub" / "c.txt").write_text("added by hand")


def _no_manifest(folder: Path) -> None:
    (folder / cache.MANIFEST).unlink()


def _bad_manifest(folder: Path) -> None:
    (folder / cache.MANIFEST).write_text('{"files": ')


FAULTS = [
    ("deleted", _delete, r"sub/b\.bin is missing"),
    ("truncated", _truncate, r"a\.json has 5 bytes, the manifest says 8"),
    ("emptied", _empty, r"a\.json has 0 bytes \(empty\), the manifest says 8"),
    ("edited", _same_size_edit, r"a\.json changed since it was built \(its sha256 differs from the manifest's\)"),
    ("added", _extra_file, r"sub/c\.txt is not in its manifest"),
    ("no-manifest", _no_manifest,
     r"it has no manifest retrlab-manifest\.json \(built by an older retrlab, or not by retrlab\)"),
    ("bad-manifest", _bad_manifest, r"its manifest retrlab-manifest\.json is unreadable"),
]


@pytest.mark.parametrize("damage, message", [f[1:] for f in FAULTS], ids=[f[0] for f in FAULTS])
def test_a_damaged_cached_folder_is_rebuilt_with_a_warning_naming_the_file(home, damage, message):
    builds = []
    folder = cached_dir("thing", lambda f: (builds.append(1), build_two_files(f)))
    damage(folder)
    with pytest.warns(CacheRebuildWarning, match=rf"cache entry .*thing is damaged: {message}; rebuilding it"):
        again = cached_dir("thing", lambda f: (builds.append(1), build_two_files(f)))
    assert again == folder and len(builds) == 2
    assert (folder / "a.json").read_text() == '{"x": 1}' and cache.problem(folder) is None
    assert sorted(p.name for p in home.iterdir()) == ["thing"]  # no temporary folder left


def test_a_large_file_is_checked_on_its_size_and_ends(tmp_path, monkeypatch):
    monkeypatch.setattr(cache, "FULL_HASH_LIMIT", 64)
    monkeypatch.setattr(cache, "END_BYTES", 16)
    weights = tmp_path / "weights.bin"
    weights.write_bytes(bytes(100))
    seal(weights)
    assert cache.problem(weights) is None
    weights.write_bytes(bytes(99) + b"\x01")  # last byte changed
    assert "changed since it was built" in cache.problem(weights)
    weights.write_bytes(bytes(40) + b"\x01" + bytes(59))  # the middle: not hashed, by design
    assert cache.problem(weights) is None
    weights.write_bytes(bytes(101))
    assert "has 101 bytes, the manifest says 100" in cache.problem(weights)


# --- single-file artifacts: pools and embeddings ---------------------------------------------------
def test_a_sealed_file_is_trusted_only_while_it_matches(tmp_path):
    path = tmp_path / "pool.json"
    path.write_text("[1, 2, 3]")
    with pytest.warns(CacheRebuildWarning, match=r"pool\.json is damaged: it has no manifest pool\.json\.manifest\.json"):
        assert not intact(path)
    seal(path)
    assert intact(path) and (tmp_path / "pool.json.manifest.json").is_file()
    path.write_text("[1, 2")
    with pytest.warns(CacheRebuildWarning, match=r"pool\.json has 5 bytes, the manifest says 9"):
        assert not intact(path)
    path.unlink()
    assert not intact(path)  # absent: simply not cached, no warning


def test_a_damaged_warmup_pool_is_mined_again(toy_data, home, monkeypatch):
    mined = []

    def mine(model, data, split, depth, source):
        mined.append(split)
        return bm25_pool(data, split, depth=depth)

    monkeypatch.setattr(artifacts, "warmup_retriever", lambda *a, **k: None)
    monkeypatch.setattr(artifacts, "dense_pool", mine)
    first = artifacts.warmup_pool(toy_data, depth=3, smoke=True)
    assert artifacts.warmup_pool(toy_data, depth=3, smoke=True).pids == first.pids and len(mined) == 1
    path = next((home / "pools").glob("warmup-*-d3.json"))
    path.write_text(path.read_text()[:-10])  # cut short, as by a full disk
    with pytest.warns(CacheRebuildWarning, match=r"warmup-.*-d3\.json is damaged: .*-d3\.json has \d+ bytes"):
        again = artifacts.warmup_pool(toy_data, depth=3, smoke=True)
    assert again.pids == first.pids and len(mined) == 2


def test_damaged_cached_embeddings_are_encoded_again(toy_data, home, monkeypatch):
    encoded = []

    def encode(model, data, pids, progress=True):
        encoded.append(len(pids))
        return np.arange(len(pids) * 2, dtype=np.float32).reshape(len(pids), 2)

    monkeypatch.setattr(evaluation, "encode_corpus", encode)
    model = SimpleNamespace(pooling="mean", normalize=True, passage_max_length=32)
    pids = toy_data.pids[:4]
    first = evaluation.cached_corpus_embeddings(model, "m", toy_data, pids)
    path = next((home / "embeddings").glob("m-*.npy"))
    np.save(path, first[:2])  # a valid .npy, but not the one that was built
    with pytest.warns(CacheRebuildWarning, match=r"\.npy has \d+ bytes"):
        again = evaluation.cached_corpus_embeddings(model, "m", toy_data, pids)
    np.testing.assert_array_equal(again, first)
    assert encoded == [4, 4]


# --- the wiki-car folder: the exact scenarios ---------------------------------------
@pytest.fixture(scope="module")
def wikicar_home(tmp_path_factory) -> Path:
    """A real wiki-car build (the slow part, once per module)."""
    home = tmp_path_factory.mktemp("wikicar-home")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("RETRLAB_HOME", str(home))
        wikicar.load_wikicar(seed=0)
    return home


@pytest.fixture
def built(wikicar_home, tmp_path, monkeypatch) -> Path:
    """A copy of the built wiki-car folder in a fresh cache; a rebuild reuses the parsed corpus."""
    name = f"wikicar-{wikicar.VERSION}-seed0"
    shutil.copytree(wikicar_home / name, tmp_path / name)
    corpus = json.loads((wikicar_home / name / "corpus.json").read_text())
    monkeypatch.setattr(wikicar, "build_corpus", lambda: corpus)  # skip the parse: the rest is the build
    monkeypatch.setenv("RETRLAB_HOME", str(tmp_path))
    return tmp_path / name


def _bm25_test_metrics(capsys) -> tuple[dict, str]:
    assert main(["eval", "--model", "bm25", "--json"]) == 0
    out, err = capsys.readouterr()
    return json.loads(out.strip().splitlines()[-1]), err


@pytest.mark.slow
def test_eval_after_split_pids_json_is_deleted_rebuilds_and_reports_the_true_numbers(built, capsys):
    intact_metrics, err = _bm25_test_metrics(capsys)
    assert round(intact_metrics["MRR@10"], 4) == 0.5518 and "warning" not in err
    (built / "split_pids.json").unlink()  # before: every split searched all 4,382 passages, MRR@10 0.538
    metrics, err = _bm25_test_metrics(capsys)
    assert metrics == intact_metrics
    assert "retrlab: warning: cache entry" in err and "split_pids.json is missing; rebuilding it" in err


@pytest.mark.slow
@pytest.mark.parametrize("name, text, message", [
    ("corpus.json", None, r"corpus\.json has \d+ bytes, the manifest says \d+"),
    ("meta.json", "", r"meta\.json has 0 bytes \(empty\), the manifest says 20"),
])
def test_a_truncated_corpus_or_empty_meta_is_rebuilt(built, name, text, message):
    expected = wikicar.RetrievalData.load(built)
    raw = (built / name).read_text()
    (built / name).write_text(raw[: len(raw) // 2] if text is None else text)
    with pytest.warns(CacheRebuildWarning, match=message):
        data = wikicar.load_wikicar(seed=0)
    assert data.corpus == expected.corpus and data.split_pids == expected.split_pids
    assert data.name == "wiki-car"


# --- RETRLAB_HOME and the run file: one named error, before any work --------------------------
def _can_write(folder: Path) -> bool:
    try:
        tempfile.TemporaryFile(dir=folder).close()
    except OSError:
        return False
    return True


@pytest.fixture
def read_only_folder(tmp_path) -> Path:
    """A folder this process cannot write in: mode 555, or, for root (who ignores the mode), /sys."""
    folder = tmp_path / "read-only"
    folder.mkdir()
    folder.chmod(0o555)
    yield folder if not _can_write(folder) else Path("/sys")
    folder.chmod(0o755)


def test_a_read_only_cache_folder_is_one_named_error_before_the_build(read_only_folder, monkeypatch, capsys):
    if _can_write(read_only_folder):
        pytest.skip("no folder this process cannot write in")
    monkeypatch.setenv("RETRLAB_HOME", str(read_only_folder))
    built = []
    with pytest.raises(CacheError, match=rf"cannot build thing: the cache folder {read_only_folder} is not "
                                         r"writable \(.*\); set RETRLAB_HOME to a writable folder"):
        cached_dir("thing", built.append)
    assert built == []  # failed before building, not after
    assert main(["data"]) == 2
    assert "retrlab: error: cannot build wikicar-v1-seed0" in capsys.readouterr().err


def test_a_file_shaped_cache_folder_is_a_cli_error(tmp_path, monkeypatch, capsys):
    (tmp_path / "f").write_text("x")
    monkeypatch.setenv("RETRLAB_HOME", str(tmp_path / "f"))
    assert main(["data"]) == 2
    assert f"retrlab: error: RETRLAB_HOME={tmp_path / 'f'} is a file, not a folder" in capsys.readouterr().err


def _beir_with_query_id(folder: Path, qid: str) -> Path:
    queries = [{"_id": qid, "text": "what do cats do"}, *QUERIES[1:]]
    return write_beir(folder, queries=_jsonl(queries), test=_tsv([f"{qid}\td1\t1", "q2\td2\t1"]))


@pytest.mark.parametrize("case", ["folder", "read-only", "whitespace-id"])
def test_a_run_file_that_cannot_be_written_fails_before_the_evaluation(case, tmp_path, read_only_folder,
                                                                       monkeypatch, capsys):
    if case == "read-only" and _can_write(read_only_folder):
        pytest.skip("no folder this process cannot write in")
    target = {"folder": tmp_path, "read-only": read_only_folder / "run.trec"}.get(case, tmp_path / "run.trec")
    folder = _beir_with_query_id(tmp_path / "beir", "q 1" if case == "whitespace-id" else "q1")
    monkeypatch.setattr(evaluation, "bm25_run", lambda *a, **k: pytest.fail("evaluated before checking"))
    assert main(["eval", "--beir", str(folder), "--model", "bm25", "--run-file", str(target)]) == 2
    out, err = capsys.readouterr()
    assert out == ""  # no metrics printed, nothing lost after them
    expected = {"folder": "is a folder", "read-only": "is not writable",
                "whitespace-id": "qid 'q 1' is empty or contains whitespace"}[case]
    assert expected in err and str(target if case != "whitespace-id" else "") in err


def test_check_writable_accepts_a_new_file_in_new_folders(tmp_path):
    assert check_writable(tmp_path / "a" / "b" / "run.trec") == tmp_path / "a" / "b" / "run.trec"
    assert not (tmp_path / "a").exists()  # checked, not created


# --- TREC run files and BEIR folders -------------------------------------------------------------
def test_a_run_file_with_a_byte_order_mark_keeps_its_first_query_and_document(tmp_path):
    path = tmp_path / "run.trec"
    path.write_bytes("q1 Q0 d1 1 2.0 t\nq1 Q0 d2 2 1.0 t\n".encode("utf-8-sig"))
    run = read_trec_run(path)
    assert run == {"q1": {"d1": 2.0, "d2": 1.0}}  # not "\ufeffq1"
    assert evaluate(run, {"q1": {"d1": 1}}, ["MRR@10"]) == {"MRR@10": 1.0}


def test_a_beir_split_judged_only_zero_is_a_named_cli_error(tmp_path, capsys):
    folder = write_beir(tmp_path / "b", test=_tsv(["q1\td3\t0"]))
    assert main(["eval", "--beir", str(folder), "--model", "bm25"]) == 2  # before: a crash inside bm25s
    err = capsys.readouterr().err
    assert "retrlab: warning: " in err and "test.tsv: no row has a score > 0, so split 'test' is empty" in err
    assert "retrlab: error: split 'test' of b has no query to evaluate" in err


def test_queries_missing_from_every_qrels_file_do_not_break_the_data_card(tmp_path, capsys):
    queries = _jsonl([*QUERIES, {"_id": "q0", "text": "judged nowhere"}])
    folder = write_beir(tmp_path / "b", queries=queries)
    assert main(["data", "--beir", str(folder)]) == 0
    card = wikicar.data_card(load_beir(folder))
    assert card["queries"] == {"dev": 1, "test": 2, "all": 4}
    assert card["relevant_per_query"] == {"mean": 4 / 3, "exactly_one": 2 / 3}  # q1: 2, q2: 1, q3: 1


# --- widgets ---------------------------------------------------------------------------------------
def _pool_whose_first_query_is_empty(data):
    qids = data.qids("train")
    ranked = [[]] + [[p for p in data.search_pids("train") if p not in data.positives[q]] for q in qids[1:]]
    scores = [np.linspace(0.9, 0.1, len(r)) for r in ranked]
    return pool_from_ranking(data, "toy", qids, ranked, scores, np.full(len(qids), 0.8), 10)


def test_an_explorer_whose_first_query_has_no_candidates_shows_it(toy_data):
    pool = _pool_whose_first_query_is_empty(toy_data)
    widget = SimilarityExplorer(pool, toy_data)
    assert widget.qid == "q0" and widget.result.pids == [] and widget.png
    assert widget.selected == {"top-k": [], "uniform": [], "SimANS": [], "margin": []}
    widget.set(qid="q1")
    assert len(widget.selected["top-k"]) == 3
    widget.set(qid="q0")
    assert widget.caption.startswith("q0 |") and widget.renders == 3


@pytest.mark.parametrize("make", [lambda pool, data: SimilarityExplorer(pool, data),
                                  lambda pool, data: DistributionView(pool)], ids=["explorer", "distribution"])
def test_set_is_all_or_nothing(make, toy_data):
    from test_bad_inputs import toy_pool

    widget = make(toy_pool(toy_data), toy_data)
    before = (widget.settings, widget.renders, widget.png)
    with pytest.raises(ValueError, match=r"b=5 is outside the slider's range \[-0\.5, 0\.5\]"):
        widget.set(a=50, b=5)
    assert (widget.settings, widget.renders, widget.png) == before  # a is still 100, the figure unchanged
    widget.set(a=50, b=0.1)
    assert (widget.settings.a, widget.settings.b, widget.renders) == (50, 0.1, before[1] + 1)
