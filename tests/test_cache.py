import pytest

from retrlab.cache import atomic_write_json, cached_dir, home, load_json


def test_home_follows_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("RETRLAB_HOME", str(tmp_path / "h"))
    assert home() == tmp_path / "h" and home().is_dir()


def test_atomic_json_round_trip_leaves_no_temp_file(tmp_path):
    atomic_write_json(tmp_path / "x.json", {"a": [1, 2]})
    assert load_json(tmp_path / "x.json") == {"a": [1, 2]}
    assert [p.name for p in tmp_path.iterdir()] == ["x.json"]


def test_interrupted_build_leaves_nothing_and_rebuilds(tmp_path, monkeypatch):
    monkeypatch.setenv("RETRLAB_HOME", str(tmp_path))

    def broken(folder):
        (folder / "half.txt").write_text("half")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        cached_dir("thing", broken)
    assert list(tmp_path.iterdir()) == []
    calls = []
    folder = cached_dir("thing", lambda f: calls.append((f / "ok.txt").write_text("ok")))
    assert (folder / "ok.txt").read_text() == "ok"
    cached_dir("thing", lambda f: calls.append(1))
    assert len(calls) == 1  # second call: from the cache
