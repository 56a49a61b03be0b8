import json

import pytest

from retrlab.cli import main
from tests.helpers import make_toy_data


def _write_beir(folder, data):
    (folder / "qrels").mkdir(parents=True)
    with open(folder / "corpus.jsonl", "w") as f:
        for pid, doc in data.corpus.items():
            f.write(json.dumps({"_id": pid, "title": doc["title"], "text": doc["text"]}) + "\n")
    with open(folder / "queries.jsonl", "w") as f:
        for qid, text in data.queries.items():
            f.write(json.dumps({"_id": qid, "text": text}) + "\n")
    with open(folder / "qrels" / "test.tsv", "w") as f:
        f.write("query-id\tcorpus-id\tscore\n")
        for qid, rel in data.qrels.items():
            f.writelines(f"{qid}\t{pid}\t{g}\n" for pid, g in rel.items())


def test_eval_bm25_on_a_beir_folder(tmp_path, capsys):
    _write_beir(tmp_path / "toy", make_toy_data())
    assert main(["eval", "--beir", str(tmp_path / "toy"), "--model", "bm25", "--json",
                 "--run-file", str(tmp_path / "run.trec")]) == 0
    out = capsys.readouterr().out
    metrics = json.loads(out.strip().splitlines()[-1])
    assert set(metrics) == {"MRR@10", "R@20", "R@100", "nDCG@10"} and 0 < metrics["MRR@10"] <= 1
    assert (tmp_path / "run.trec").read_text().split("\n")[0].split()[1] == "Q0"


def test_bad_paths_give_an_error_and_exit_code_2(tmp_path, capsys):
    assert main(["eval", "--beir", str(tmp_path / "missing"), "--model", "bm25"]) == 2
    assert "retrlab: error" in capsys.readouterr().err
    _write_beir(tmp_path / "toy", make_toy_data())
    assert main(["eval", "--beir", str(tmp_path / "toy"), "--model", str(tmp_path / "no-model")]) == 2


def test_data_prints_the_card_of_a_beir_folder(tmp_path, capsys):
    _write_beir(tmp_path / "toy", make_toy_data())
    assert main(["data", "--beir", str(tmp_path / "toy")]) == 0
    out = capsys.readouterr().out
    assert "12" in out and "passages" in out


def test_notebooks_command_runs_a_notebook_into_html(tmp_path, capsys):
    import nbformat
    from nbformat.v4 import new_code_cell, new_notebook

    folder = tmp_path / "nbs"
    folder.mkdir()
    nb = new_notebook(cells=[new_code_cell("import os\nprint('smoke', os.environ['RETRLAB_SMOKE'])")])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, folder / "00_probe.ipynb")
    assert main(["notebooks", "--dir", str(folder), "--out", str(tmp_path / "out")]) == 0
    html = (tmp_path / "out" / "00_probe-smoke.html").read_text()
    assert "smoke 1" in html
    assert "| `00_probe` | smoke |" in (tmp_path / "out" / "timings-smoke.md").read_text()
    assert main(["notebooks", "--dir", str(folder), "--only", "99"]) == 2


def test_run_rejects_an_unknown_strategy_listing_the_valid_ones(capsys):
    assert main(["run", "dpr"]) == 2
    err = capsys.readouterr().err
    assert "unknown strategy 'dpr'; choose one of: inbatch, bm25, star, ance, adore" in err
    assert "simans" in err
    assert main(["leaderboard", "--strategies", "star", "nope"]) == 2
    assert "unknown strategy 'nope'" in capsys.readouterr().err


def test_pretraining_study_rejects_zero_workers_naming_the_flag(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["pretraining-study", "--protocol", "continued", "--workers", "0"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "--workers" in err and "must be >= 1, got 0" in err


def test_leaderboard_and_run_print_a_table_and_save_json_and_plot(tmp_path, monkeypatch, capsys):
    from retrlab.leaderboard import Leaderboard
    from tests.test_experiments import use_tiny_models

    use_tiny_models(monkeypatch, tmp_path / "home")  # tiny random models on the toy data: seconds
    monkeypatch.setattr("retrlab.data.load_wikicar", lambda seed=0: make_toy_data())
    assert main(["leaderboard", "--smoke", "--strategies", "inbatch", "star", "--seeds", "0", "1",
                 "--steps", "1", "--out", str(tmp_path / "board")]) == 0
    out = capsys.readouterr().out
    assert "DPR in-batch" in out and "STAR" in out and "±" in out and "warm-up (start)" in out
    board = Leaderboard.load(tmp_path / "board")
    assert (board.budget.steps, board.seeds(), board.strategies()) == (1, [0, 1], ["inbatch", "star"])
    assert (tmp_path / "board" / "leaderboard.png").read_bytes()[:4] == b"\x89PNG"
    effects = (tmp_path / "board" / "effects.md").read_text()  # STAR vs in-batch is one paper effect
    assert "STAR: static hard + random negatives beat in-batch only" in effects and "paper effects" in out
    assert "DPR: one BM25" not in effects  # its BM25 row was not run
    args = ["run", "simans", "--smoke", "--seed", "3", "--batch-size", "2", "--out", str(tmp_path / "one")]
    assert main(args) == 0
    one = Leaderboard.load(tmp_path / "one")
    assert [(r.strategy, r.seed) for r in one.results] == [("simans", 3)] and one.budget.batch_size == 2
    assert one.results[0].negatives == 2 * 2  # smoke: 2 steps x 2 queries x 1 SimANS negative


def test_prepare_builds_what_the_notebooks_load_and_a_second_run_builds_nothing(tmp_path, monkeypatch, capsys):
    from retrlab import artifacts
    from tests.test_experiments import use_tiny_models

    use_tiny_models(monkeypatch, tmp_path / "home")  # tiny random models on the toy data: seconds
    monkeypatch.setattr("retrlab.data.load_wikicar", lambda seed=0: make_toy_data())
    tiny = artifacts.Budget(steps=1, batch_size=2, max_length=32)  # the toy data has 4 train queries
    monkeypatch.setitem(artifacts.WARMUP_BUDGET, False, tiny)
    monkeypatch.setitem(artifacts.STAR_BUDGET, False, tiny)
    monkeypatch.setitem(artifacts.CE_BUDGET, False, artifacts.CE_BUDGET[True])
    assert main(["prepare"]) == 0
    out = capsys.readouterr().out
    for built in ("building the warm-up retriever", "mining the warm-up pool", "building the STAR retriever",
                  "building the cross-encoder", "every shared artifact ready"):
        assert built in out
    assert len(list((tmp_path / "home" / "embeddings").glob("minilm-*.npy"))) == 3  # train, test; test at 128
    assert main(["prepare"]) == 0
    assert "building" not in capsys.readouterr().out  # all cached now
    data = make_toy_data()  # what notebooks 02-06 call finds it all built: nothing printed, nothing trained
    artifacts.warmup_pool(data, smoke=False), artifacts.star_retriever(data, smoke=False)
    artifacts.cross_encoder(data, smoke=False)
    assert capsys.readouterr().out == ""
