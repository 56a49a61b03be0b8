"""The leaderboard (retrlab.leaderboard): registry, budgets, measurements, comparisons, JSON + plot.

Everything runs on the hand-made toy data with tiny random models in place of MiniLM (the same
monkeypatch as tests/test_artifacts.py), so the artifacts go through the real cached builders.
"""
from __future__ import annotations

import dataclasses
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pytest

from retrlab.artifacts import Budget
from retrlab.encoders import BiEncoder, CrossEncoder
from retrlab.leaderboard import (DEFAULT, FULL, FULL_BOARD_COMMAND, FULL_BOARD_STRATEGIES, SMOKE, ENTRIES, Context,
                                 Leaderboard, LeaderboardBudget, Result, default_strategies, get_entry, preset,
                                 run_leaderboard, run_entry, stored_board)
from retrlab.leaderboard import board as board_module
from retrlab.leaderboard import effects_table
from retrlab.lesson import show_full_board_effect
from retrlab.losses import ar2_retriever_loss
from retrlab.methods import ar2
from retrlab.rerank import CrossEncoderBudget
from tests.helpers import make_tiny_cross_encoder, make_toy_data

TINY_CE = CrossEncoderBudget(steps=1, batch_size=2, negatives=1, max_length=48, depth=5, eval_queries=2,
                             eval_depth=3)
TOY = LeaderboardBudget(steps=2, batch_size=4, max_length=32, depth=9, warmup=Budget(1, 2, 32),
                        star=Budget(1, 2, 32), cross_encoder=TINY_CE)


def use_tiny_models(monkeypatch, home) -> None:
    monkeypatch.setenv("RETRLAB_HOME", str(home))
    monkeypatch.setattr(BiEncoder, "minilm", classmethod(lambda cls, **kw: BiEncoder.tiny(**kw)))
    monkeypatch.setattr(CrossEncoder, "minilm", classmethod(lambda cls, **kw: make_tiny_cross_encoder()))


@pytest.fixture(scope="module")
def board(tmp_path_factory) -> Leaderboard:
    with pytest.MonkeyPatch.context() as mp:
        use_tiny_models(mp, tmp_path_factory.mktemp("home"))
        mp.setenv("RETRLAB_PRECISION", "fp32")  # as the tests that compare with it (conftest.float32)
        return run_leaderboard(make_toy_data(), TOY, seeds=(0, 1), progress=False)


def test_unknown_strategy_names_the_valid_ones():
    with pytest.raises(ValueError, match="unknown strategy 'dpr'; choose one of: inbatch, bm25, star") as err:
        get_entry("dpr")
    assert all(name in str(err.value) for name in ENTRIES)
    with pytest.raises(ValueError, match="unknown strategy"):  # before any training starts
        run_leaderboard(make_toy_data(), TOY, ["star", "nope"], progress=False)


def test_budgets_validate_and_narrow_the_data(toy_data):
    assert preset() is DEFAULT and preset(smoke=True) is SMOKE and preset(full=True) is FULL
    with pytest.raises(ValueError, match="choose smoke or full"):
        preset(smoke=True, full=True)
    with pytest.raises(ValueError, match="LeaderboardBudget.steps must be an integer >= 1, got 0"):
        dataclasses.replace(TOY, steps=0)
    with pytest.raises(ValueError, match="batch_size must be >= 2"):
        dataclasses.replace(TOY, batch_size=1)
    with pytest.raises(ValueError, match="test_queries"):
        dataclasses.replace(TOY, test_queries=0)
    narrow = dataclasses.replace(TOY, train_queries=2).narrow(toy_data)
    assert narrow.qids("train") == toy_data.qids("train")[:2] == ["q0", "q1"]  # both Cats sections
    assert narrow.search_pids("train") == ["c1", "c2", "c3", "c4", "c5"]  # the corpus shrinks to the article
    assert TOY.narrow(toy_data) is toy_data
    assert LeaderboardBudget.from_dict(DEFAULT.to_dict()) == DEFAULT
    assert TOY.config(7).seed == 7 and TOY.config(7).steps == 2


def test_same_seed_gives_identical_metrics(toy_data, tmp_path, monkeypatch):
    use_tiny_models(monkeypatch, tmp_path)
    first = run_entry("star", toy_data, TOY, seed=3)
    again = run_entry("star", toy_data, TOY, seed=3)  # a new context: artifacts loaded from the cache
    assert first.metrics == again.metrics and first.run == again.run
    assert first.fn_rate == again.fn_rate and first.negatives == again.negatives == 2 * 4


def test_every_strategy_runs_and_records_its_negatives(board):
    assert board.strategies() == default_strategies() and board.seeds() == [0, 1]
    controls = ["rocketqa-fill-only", "ar2-no-ranker", "ar2-distillation-only", "ar2-adversarial-only"]  # on request
    assert [n for n in ENTRIES if ENTRIES[n].control] == controls
    assert default_strategies() == [n for n in ENTRIES if n not in controls]
    for r in board.results:
        assert set(r.metrics) == {"MRR@10", "R@20", "nDCG@10"} and set(r.run) == {"q4", "q5"}
        assert all(0.0 <= v <= 1.0 for v in r.metrics.values()) and r.train_seconds > 0 < r.train_cpu_seconds
        if r.strategy == "inbatch":
            assert r.fn_rate is None and r.negatives == 0
        elif r.strategy == "ar2":  # 2 iterations x 1 retriever step x 4 queries x 3 negatives
            assert (r.steps, r.negatives, r.extra["ranker_steps"]) == (2, 2 * 4 * 3, 2)
        elif r.strategy == "rocketqa-denoised":  # the untrained ranker vetoes every candidate (p ~ 0.5 > 0.1)
            assert r.negatives == 0 and r.fn_rate is None  # and the toy pool has no rank > 10 to refill from
        elif r.strategy != "adore":  # one extra negative per query per step
            assert r.negatives == TOY.steps * TOY.batch_size and r.fn_rate in {k / 8 for k in range(9)}
    assert [r.strategy for r in board.references] == ["warm-up (start)", "STAR (ADORE's start)", "BM25"]
    built = {"warm-up retriever", "warm-up pool", "STAR model", "cross-encoder", "cross-encoder scores",
             "AR2's first refresh"}
    assert built <= set(board.prep_seconds)
    assert board.notes["denoising keeps"] == 0.0  # as the rocketqa-denoised rows said: every candidate vetoed
    assert set(board.notes["cross-encoder report"]) >= {"first_stage", "reranked", "accuracy"}


def test_ar2_control_trains_its_retriever_without_a_ranker(board, toy_data, tmp_path, monkeypatch, float32):
    use_tiny_models(monkeypatch, tmp_path)
    ctx = Context(toy_data, TOY)
    control = run_entry("ar2-no-ranker", toy_data, TOY, seed=0, context=ctx)
    assert "cross-encoder" not in ctx.prep_seconds  # no ranker was even loaded
    assert (control.steps, control.negatives, control.extra["ranker_steps"]) == (2, 2 * 4 * 3, 0)  # AR2's groups
    game = run_entry("ar2", toy_data, TOY, seed=0, context=ctx)
    assert "cross-encoder" in ctx.prep_seconds and game.extra["ranker_steps"] == 2
    assert game.run != control.run  # the ranker's steps and scores change what the retriever learns
    assert game.metrics == board.rows("ar2")[0].metrics  # same seed, same numbers, through either path
    lams = []  # the λ every retriever step's loss is computed with
    monkeypatch.setattr(ar2, "ar2_retriever_loss", lambda *args: lams.append(args[2]) or ar2_retriever_loss(*args))
    terms = {name: run_entry(name, toy_data, TOY, seed=0, context=ctx)
             for name in ("ar2-distillation-only", "ar2-adversarial-only")}  # λ = 0 and λ = 1 of the same game
    assert all(t.extra["ranker_steps"] == 2 for t in terms.values())
    assert lams == [0.0, 0.0, 1.0, 1.0]  # 2 retriever steps each
    # Their retrievers may equal the game's: the untrained tiny ranker scores every candidate alike, and
    # then both terms' gradients are proportional (test_ar2) and Adam's update is scale-free.


def test_rocketqa_control_samples_the_refill_window_without_a_cross_encoder(toy_data, tmp_path, monkeypatch):
    use_tiny_models(monkeypatch, tmp_path)
    ctx = Context(toy_data, TOY)
    control = run_entry("rocketqa-fill-only", toy_data, TOY, seed=0, context=ctx)
    assert "cross-encoder" not in ctx.prep_seconds
    assert control.negatives == 0 and control.fn_rate is None  # the toy pools hold no passage below rank 10


def test_adore_false_negative_rate_is_exact(board):
    # k = 9 = the whole toy train corpus: each query's list holds its 8 unlabelled passages, of which
    # Cats/Diet has 2 hidden positives and the other three queries 1 each -> 5 of 32 per step
    for r in board.rows("adore"):
        assert r.negatives == TOY.steps * 32 and r.fn_rate == 5 / 32 and r.start == "STAR"


def test_table_comparisons_and_json_round_trip(board, tmp_path):
    table = board.table()
    assert table.splitlines()[0].split()[:3] == ["strategy", "start", "MRR@10"]
    for name in default_strategies():
        assert ENTRIES[name].title in table
    assert "±" in table and "warm-up (start)" in table and "BM25" in table
    json_path, png = board.save(tmp_path / "out")
    assert png.read_bytes()[:4] == b"\x89PNG"
    back = Leaderboard.load(tmp_path / "out")
    assert back.table() == table and back.budget == TOY and back.results[3].run == board.results[3].run
    assert back.notes == board.notes
    comparison, robust, text = back.compare("star", "warm-up (start)")
    assert comparison.measure == "MRR@10" and text.startswith(("STAR", "warm-up"))


def test_cached_results_resume_a_run_and_stored_board_reads_them(toy_data, tmp_path, monkeypatch, capsys):
    use_tiny_models(monkeypatch, tmp_path)
    assert stored_board(toy_data, TOY, ["inbatch", "topk"], [0, 1]) is None  # nothing cached yet
    first = run_leaderboard(toy_data, TOY, ["inbatch"], seeds=(0, 1), progress=False, cache=True)
    assert stored_board(toy_data, TOY, ["inbatch", "topk"], [0, 1]) is None  # topk is still missing
    trained = []
    real = board_module.run_entry
    monkeypatch.setattr(board_module, "run_entry", lambda name, *a, **k: trained.append(name) or real(name, *a, **k))
    both = run_leaderboard(toy_data, TOY, ["inbatch", "topk"], seeds=(0, 1), progress=False, cache=True)
    assert trained == ["topk", "topk"]  # in-batch's two results came from the cache, not from training
    assert [r.run for r in both.rows("inbatch")] == [r.run for r in first.rows("inbatch")]
    stored = stored_board(toy_data, TOY, ["inbatch", "topk"], [0, 1])
    assert [asdict(r) for r in stored.results] == [asdict(r) for r in both.results]
    assert stored.qrels == both.qrels  # the reference rows were stored by the first run, untrained: the same
    assert [(r.strategy, r.metrics, r.run) for r in stored.references] == [
        (r.strategy, r.metrics, r.run) for r in both.references] and len(stored.references) == 2
    assert stored_board(toy_data, dataclasses.replace(TOY, steps=3), ["inbatch"], [0]) is None  # budget in the key
    assert FULL_BOARD_COMMAND.startswith("retrlab leaderboard --full --strategies inbatch topk simans star")
    assert FULL_BOARD_COMMAND in (Path(__file__).parents[1] / "README.md").read_text()  # the README's copy is current
    assert set(FULL_BOARD_STRATEGIES) <= set(ENTRIES)
    # what notebooks 01, 02, 05, 07 show: the effect row of the stored board, or the command that builds it
    pair = ("inbatch", "topk")
    monkeypatch.setattr("IPython.display.display", lambda *a, **k: None)
    where = dict(data=toy_data, budget=TOY, seeds=(0, 1))
    assert show_full_board_effect("simans", strategies=("inbatch", "simans"), **where) is None
    assert "retrlab leaderboard --full --strategies inbatch simans --seeds 0 1\n" in capsys.readouterr().out
    assert show_full_board_effect("ar2", data=toy_data, budget=TOY) is None  # the effect's pair, every seed
    assert "--strategies ar2 ance --seeds 0 1 2\n" in capsys.readouterr().out
    run_leaderboard(toy_data, TOY, ["simans"], seeds=(0, 1), progress=False, cache=True)
    row = show_full_board_effect("simans", strategies=("simans", *pair), **where)
    expected = next(r for r in effects_table(stored_board(toy_data, TOY, ["simans", *pair], [0, 1]))
                    if r.effect.method == "simans")
    assert (row.gap, row.low, row.high, row.verdict) == (expected.gap, expected.low, expected.high, expected.verdict)
    assert row.seeds == 2 and "topk: test MRR@10" in capsys.readouterr().out
    # ADORE's baseline is a reference row (its STAR start), stored by the run that trained ADORE
    run_leaderboard(toy_data, TOY, ["adore"], seeds=(0, 1), progress=False, cache=True)
    adore = show_full_board_effect("adore", **where)
    assert (adore.compared, adore.seeds) == ("adore vs STAR (ADORE's start)", 2)
    assert "STAR (ADORE's start): test MRR@10" in (out := capsys.readouterr().out) and "a fixed model" in out
    # notebook 06: AR2 against its own retriever trained without the ranker, on the same board
    assert show_full_board_effect("ar2", baseline="ar2-no-ranker", **where) is None
    assert "--strategies ar2 ar2-no-ranker --seeds 0 1\n" in capsys.readouterr().out
    run_leaderboard(toy_data, TOY, ["ar2", "ar2-no-ranker"], seeds=(0, 1), progress=False, cache=True)
    control = show_full_board_effect("ar2", baseline="ar2-no-ranker", **where)
    stored = stored_board(toy_data, TOY, ["ar2", "ar2-no-ranker"], [0, 1])
    assert control.compared == "ar2 vs ar2-no-ranker" and control.effect.paper_gap == 0.065
    assert control.gap == pytest.approx(stored.scores("ar2").mean() - stored.scores("ar2-no-ranker").mean())


def fake(name: str, seed: int | None, scores: list[float]) -> Result:
    """A result whose run puts the relevant passage 'd' at rank 1 (score 1) or out of the top 10 (0)."""
    run = {f"q{i}": ({"d": 2.0, "x": 1.0} if s == 1 else {f"x{j}": 20.0 - j for j in range(11)} | {"d": 0.0})
           for i, s in enumerate(scores)}
    return Result(name, seed, {"MRR@10": float(np.mean(scores))}, run, None, 0, 1.0, 0.0, 1, "warm-up")


def test_compare_needs_the_bootstrap_and_the_seed_spread():
    qrels = {f"q{i}": {"d": 1} for i in range(40)}
    strong, weak = [1] * 30 + [0] * 10, [1] * 10 + [0] * 30
    steady = Leaderboard(TOY, [fake("star", 0, strong), fake("star", 1, strong),
                               fake("inbatch", 0, weak), fake("inbatch", 1, weak)], qrels=qrels)
    comparison, robust, text = steady.compare("star", "inbatch")
    assert comparison.difference == pytest.approx(0.5) and robust
    assert text.startswith("STAR beats DPR in-batch")
    noisy = Leaderboard(TOY, [fake("star", 0, strong), fake("star", 1, weak),
                              fake("inbatch", 0, weak), fake("inbatch", 1, [1] * 9 + [0] * 31)], qrels=qrels)
    comparison, robust, text = noisy.compare("star", "inbatch")
    # seed-averaged gap 0.2625 survives the bootstrap over queries, but one seed of STAR scored 0.25:
    assert comparison.significant and not robust and "within the seed spread" in text
    tie = Leaderboard(TOY, [fake("star", 0, weak), fake("inbatch", 0, weak)], qrels=qrels)
    assert "within noise" in tie.compare("star", "inbatch")[2]
