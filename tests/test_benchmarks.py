"""The benchmarks' own arithmetic (benchmarks/*.py are scripts: loaded from their files), and the
JAX memory guard that let the bf16 benchmark train on a GPU."""
import importlib.util
import json
import os
import random
import subprocess
import sys
from pathlib import Path

import pytest
import torch

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def load(script: str):
    spec = importlib.util.spec_from_file_location(script, BENCHMARKS / f"{script}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def runs(strategy: str, precision: str, mrrs: list[float]) -> list[dict]:
    return [{"strategy": strategy, "precision": precision, "seed": s, "test_mrr10": m} for s, m in enumerate(mrrs)]


def test_bf16_summary_gives_means_spreads_and_the_verdict_per_strategy():
    bench = load("bf16_training")
    result = (runs("in-batch", "fp32", [0.66, 0.67, 0.68]) + runs("in-batch", "bf16", [0.665, 0.675, 0.67])
              + runs("top-1", "fp32", [0.40, 0.41, 0.42]) + runs("top-1", "bf16", [0.17, 0.18, 0.19])
              + runs("simans", "fp32", [0.67]) + runs("simans", "bf16", [0.68]))
    rows = {r["strategy"]: r for r in bench.summary(result, bench.STRATEGIES, ("fp32", "bf16"))}
    assert rows["in-batch"]["fp32_mean"] == pytest.approx(0.67) and rows["in-batch"]["fp32_std"] == pytest.approx(0.01)
    assert rows["in-batch"]["gap"] == pytest.approx(0.0) and rows["in-batch"]["within_seed_spread"]
    assert rows["top-1"]["gap"] == pytest.approx(-0.23) and not rows["top-1"]["within_seed_spread"]
    assert rows["simans"]["seeds"] == 1 and rows["simans"]["gap"] == pytest.approx(0.01)
    assert "within_seed_spread" not in rows["simans"]  # one seed has no spread to judge a gap by


def test_bf16_whole_wraps_the_training_call_in_autocast_and_leaves_the_policy_at_fp32(monkeypatch):
    bench = load("bf16_training")
    monkeypatch.setenv("RETRLAB_PRECISION", "auto")
    with bench.training_precision("bf16", torch.device("cpu")):
        assert os.environ["RETRLAB_PRECISION"] == "bf16" and not torch.is_autocast_enabled("cpu")
    with bench.training_precision("bf16-whole", torch.device("cpu")):  # everything inside is bf16 autocast
        assert os.environ["RETRLAB_PRECISION"] == "fp32" and torch.is_autocast_enabled("cpu")
        assert (torch.ones(2, 2) @ torch.ones(2, 2)).dtype == torch.bfloat16
    assert not torch.is_autocast_enabled("cpu")


def test_a_strategy_missing_a_precision_is_left_out():
    bench = load("bf16_training")
    rows = bench.summary(runs("top-1", "fp32", [0.4, 0.5]), bench.STRATEGIES, ("fp32", "bf16"))
    assert rows == []


@pytest.mark.parametrize("preset, expected", [(None, "false"), ("true", "true")])
def test_bm25_keeps_jax_from_taking_the_gpu_unless_told_otherwise(preset, expected):
    env = {k: v for k, v in os.environ.items() if k != "XLA_PYTHON_CLIENT_PREALLOCATE"}
    if preset is not None:
        env["XLA_PYTHON_CLIENT_PREALLOCATE"] = preset
    code = "import os, retrlab.bm25; print(os.environ['XLA_PYTHON_CLIENT_PREALLOCATE'])"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == expected


def test_bf16_benchmark_runs_end_to_end_and_writes_its_report(tmp_path):
    # The smallest real run: one top-1 training of one step on a 20-query subset, float32 only.
    args = ["--device", "cpu", "--steps", "1", "--batch-size", "2", "--subset", "20", "--seeds", "0",
            "--strategies", "top-1", "--precisions", "fp32", "--out", str(tmp_path)]
    out = subprocess.run([sys.executable, str(BENCHMARKS / "bf16_training.py"), *args],
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    report = json.loads((tmp_path / "bf16_training_cpu.json").read_text())
    assert [(r["strategy"], r["precision"], r["seed"]) for r in report["runs"]] == [("top-1", "fp32", 0)]
    assert 0 < report["runs"][0]["test_mrr10"] <= 1 and report["embeddings"]["min_cosine"] > 0.999
    assert report["summary"][0]["seeds"] == 1 and "no seed spread" in out.stdout


def test_cross_encoder_benchmark_runs_end_to_end_and_reads_one_model_both_ways(tmp_path, home):
    # --quick: a 40-query subset and the smoke budget (3 steps); one seed, both precisions.
    args = ["--quick", "--seeds", "0", "--out", str(tmp_path)]
    out = subprocess.run([sys.executable, str(BENCHMARKS / "bf16_cross_encoder.py"), *args],
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    report = json.loads((tmp_path / "bf16_cross_encoder.json").read_text())
    assert [(r["precision"], r["seed"]) for r in report["runs"]] == [("fp32", 0), ("bf16", 0)]
    assert all(0 < r["dev_reranked_mrr10"] <= 1 and r["seconds_per_step"] > 0 for r in report["runs"])
    agreement = report["agreement"]
    assert agreement["pairs"] > 0 and 0 <= agreement["median_abs_logit_diff"] <= agreement["max_abs_logit_diff"]
    summary = report["summary"]
    assert summary["gap"] == pytest.approx(summary["bf16_mean"] - summary["fp32_mean"])


def test_cross_encoder_summary_calls_a_gap_within_the_seed_spread(monkeypatch):
    monkeypatch.syspath_prepend(str(BENCHMARKS))  # it imports bf16_training's helpers, as run from its folder
    bench = load("bf16_cross_encoder")
    runs = [{"precision": p, "seed": s, "dev_reranked_mrr10": m, "seconds_per_step": t}
            for p, t, mrrs in (("fp32", 0.9, [0.62, 0.58, 0.58]), ("bf16", 0.45, [0.63, 0.57, 0.58]))
            for s, m in enumerate(mrrs)]
    row = bench.summary(runs, ("fp32", "bf16"))
    assert row["fp32_mean"] == pytest.approx(0.5933333) and row["gap"] == pytest.approx(0.0)
    assert row["fp32_std"] == pytest.approx(0.0230940) and row["within_seed_spread"]
    assert row["bf16_seconds_per_step"] == pytest.approx(0.45)
    far = [dict(r, dev_reranked_mrr10=r["dev_reranked_mrr10"] + 0.1) if r["precision"] == "bf16" else r for r in runs]
    assert not bench.summary(far, ("fp32", "bf16"))["within_seed_spread"]


def test_top1_knobs_parses_one_knob_per_setting_and_names_a_bad_one():
    knobs = load("top1_knobs")
    assert knobs.parse_setting("base") == (knobs.BASE, "top-1")
    assert knobs.parse_setting("inbatch") == (knobs.BASE, None)
    config, source = knobs.parse_setting("tau=0.2")
    assert source == "top-1" and config.tau == 0.2 and config.lr == knobs.BASE.lr and config.max_grad_norm == 1.0
    assert knobs.parse_setting("clip=none")[0].max_grad_norm == float("inf")
    assert knobs.parse_setting("warmup=0")[0].warmup_ratio == 0.0
    assert knobs.parse_setting("ranks=5-30") == (knobs.BASE, "ranks=5-30")
    assert knobs.parse_setting("article=other") == (knobs.BASE, "article=other")
    with pytest.raises(ValueError, match=r"setting 'temp=0\.1': expected 'base', 'inbatch', ranks=a-b"):
        knobs.parse_setting("temp=0.1")
    for window in ("30-5", "0-10", "5-101", "5", "a-b"):
        with pytest.raises(ValueError, match=rf"ranks must be a-b with 1 <= a <= b <= 100.*{window!r}"):
            knobs.parse_setting(f"ranks={window}")
    with pytest.raises(ValueError, match=r"setting 'article=near': article must be 'same' or 'other'"):
        knobs.parse_setting("article=near")
    with pytest.raises(ValueError, match=r"TrainConfig\.warmup_ratio must be in \[0, 1\], got 1\.5"):
        knobs.parse_setting("warmup=1.5")


# query a-q1 of test_qrels_flavours' toy asks for A / History / Early (a-003); a ranking with every kind of
# place and no hidden positive: parent, sibling, other article, lead, other article, other section
RANKING = ["a-001", "a-004", "b-001", "a-000", "b-000", "a-005"]


def ranked_for_a_q1(ranking: list[str], positive_score: float = 1.0):
    """A one-query pool: ``ranking`` scored 1.0, 0.9, ... downwards (0.1 apart), no hidden positive."""
    import numpy as np

    from retrlab.pool import CandidatePool

    scores = 1.0 - 0.1 * np.arange(len(ranking))
    return CandidatePool("hand", ["a-q1"], [ranking], [scores], [np.zeros(len(ranking), bool)],
                         np.array([positive_score]), np.array([1]))


def test_top1_knobs_negative_sources_pick_by_rank_window_and_by_article():
    from tests.test_qrels_flavours import toy

    knobs, data = load("top1_knobs"), toy()
    pool = ranked_for_a_q1(RANKING)
    rng = random.Random(0)
    assert knobs.negatives("top-1", data, pool)("a-q1", rng) == ["a-001"]
    assert knobs.negatives("article=same", data, pool)("a-q1", rng) == ["a-001"]  # the parent heading
    assert knobs.negatives("article=other", data, pool)("a-q1", rng) == ["b-001"]  # rank 3, article B
    draws = {knobs.negatives("ranks=4-5", data, pool)("a-q1", rng)[0] for _ in range(50)}
    assert draws == {"a-000", "b-000"}
    picked = []
    sampler = knobs.recording(knobs.negatives("article=other", data, pool), picked)
    sampler("a-q1", rng), sampler("a-q1", rng)
    assert picked == [("a-q1", "b-001")] * 2 and knobs.pool_ranks(pool, picked) == [3, 3]
    only_same = ranked_for_a_q1(RANKING[:2])
    assert knobs.negatives("article=other", data, only_same)("a-q1", rng) == ["a-004"]  # none: the last one


def test_top1_knobs_body_setting_drops_only_the_title_prefix():
    from tests.test_qrels_flavours import toy

    knobs, data = load("top1_knobs"), toy()
    assert knobs.parse_setting("article=other@body") == knobs.parse_setting("article=other")
    assert knobs.parse_setting("inbatch@body") == (knobs.BASE, None)
    body = knobs.untitled(data)
    assert data.passage_text("a-003") == "A: text a-003" and body.passage_text("a-003") == "text a-003"
    assert body.queries == data.queries and body.qrels == data.qrels and body.splits == data.splits
    assert body.corpus["a-003"]["section"] == "A / History / Early" and data.corpus["a-003"]["title"] == "A"


def test_top1_knobs_summary_averages_seeds_and_finds_each_runs_best_dev_step():
    knobs = load("top1_knobs")

    def run(setting, seed, dev, test):
        return {"setting": setting, "seed": seed, "curve_steps": [10, 20, 30], "dev_mrr10": dev, "test_mrr10": test,
                "gauge": [0.5, 0.6, 0.7], "loss": [1.0] * 5 + [0.5] * 10, "grad_norm": [1.0, 2.0, 9.0]}

    start = {"dev_mrr10": 0.45, "gauge": 0.39, "test_mrr10": 0.58}
    rows = knobs.summary([run("base", 0, [0.5, 0.4, 0.3], 0.40), run("base", 1, [0.4, 0.5, 0.2], 0.44),
                          run("tau=0.2", 0, [0.5, 0.6, 0.7], 0.66)], start)
    base, tau = rows
    assert base["setting"] == "base" and base["seeds"] == [0, 1]
    assert base["dev_end"] == (pytest.approx(0.25), pytest.approx(0.0707107, abs=1e-6))
    assert base["dev_best"] == pytest.approx(0.5) and base["best_step"] == 15  # steps 10 and 20
    assert base["loss_last10"] == pytest.approx(0.5) and base["grad_norm_median"] == 2.0
    assert base["test"] == (pytest.approx(0.42), pytest.approx(0.0282843, abs=1e-6))
    assert base["dev_gap_to_start"] == pytest.approx(-0.2)
    assert tau["seeds"] == [0] and tau["test"][1] == 0.0 and tau["best_step"] == 30


def test_top1_knobs_builds_only_the_regimes_its_settings_need(tmp_path, monkeypatch):
    from tests.test_qrels_flavours import toy

    knobs, built = load("top1_knobs"), []
    starts = {"toy": {"dev_mrr10": 0.5, "gauge": 0.4, "test_mrr10": 0.6},
              "toy-body": {"dev_mrr10": 0.3, "gauge": 0.2, "test_mrr10": 0.35}}
    monkeypatch.setattr(knobs, "load_wikicar", toy)
    monkeypatch.setattr(knobs, "regime", lambda data, max_length: built.append(data.name) or {"start": starts[data.name]})
    monkeypatch.setattr(knobs, "one_run", lambda shared, setting, seed, args: {
        "setting": setting, "seed": seed, "steps": args.steps, "test_mrr10": 0.5, "curve_steps": [10],
        "dev_mrr10": [0.4], "gauge": [0.3], "loss": [1.0], "grad_norm": [2.0], "negative_rank_median": None,
        "start_dev_mrr10": shared["start"]["dev_mrr10"]})
    sweep = ["top1_knobs.py", "--out", str(tmp_path), "--settings"]
    monkeypatch.setattr(sys, "argv", [*sweep, "base@body"])
    knobs.main()  # no earlier sweep: the titled start is measured once, for the summary
    assert built == ["toy", "toy-body"]
    monkeypatch.setattr(sys, "argv", [*sweep, "inbatch@body"])
    knobs.main()  # a body-only sweep added to it reuses the titled start it wrote
    assert built == ["toy", "toy-body", "toy-body"]
    report = json.loads((tmp_path / "top1_knobs.json").read_text())
    assert report["start"] == starts["toy"] and report["start_body"] == starts["toy-body"]
    assert [r["setting"] for r in report["runs"]] == ["base@body", "inbatch@body"]


def test_top1_knobs_runs_end_to_end_and_writes_curves(tmp_path):
    args = ["--steps", "3", "--every", "1", "--subset", "20", "--settings", "base", "clip=none",
            "--out", str(tmp_path)]
    out = subprocess.run([sys.executable, str(BENCHMARKS / "top1_knobs.py"), *args],
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    report = json.loads((tmp_path / "top1_knobs.json").read_text())
    base, unclipped = report["runs"]
    assert base["curve_steps"] == [1, 2, 3] and len(base["loss"]) == len(base["grad_norm"]) == 3
    # step 1 is the warm-up's (learning rate 0): both runs reach step 2 with the zero-shot weights ...
    assert base["grad_norm"][:2] == unclipped["grad_norm"][:2] and min(base["grad_norm"][:2]) > 1
    # ... then step 2 moves them by a gradient clipped to norm 1 in one run only
    assert base["grad_norm"][2] != unclipped["grad_norm"][2]
    assert [r["setting"] for r in report["summary"]] == ["base", "clip=none"] and "written:" in out.stdout


def test_top1_anatomy_counts_words_overlap_and_repeated_bodies_exactly():
    anatomy = load("top1_anatomy")
    assert anatomy.words("Hello, World! 3 cats") == ["hello", "world", "3", "cats"]
    assert anatomy.jaccard("a b c", "b c d") == 0.5 and anatomy.jaccard("", "") == 0.0
    assert anatomy.jaccard("The cat.", "the CAT") == 1.0
    assert anatomy.duplicate_bodies(["x y", " X Y ", "z", "x y", "w"]) == 2


def test_top1_anatomy_profiles_a_rank_window_by_heading_relation_and_score():
    from tests.test_qrels_flavours import toy

    anatomy, data = load("top1_anatomy"), toy()
    pool = ranked_for_a_q1(RANKING, positive_score=0.8)  # scores 1.0, 0.9, ...: ranks 1-2 lie above it
    top4 = anatomy.window_profile(data, pool, 1, 4)
    assert top4 == {"relevant": 0.0, "other-section": 0.0, "other-article": 0.25, "same_topic": 0.75,
                    "above_positive": 0.5, "candidates": 4}
    assert anatomy.window_profile(data, pool, 5, 6)["other-section"] == 0.5


def test_top1_anatomy_runs_end_to_end_and_refuses_zero_pairs(tmp_path):
    script = str(BENCHMARKS / "top1_anatomy.py")
    bad = subprocess.run([sys.executable, script, "--pairs", "0", "--out", str(tmp_path)],
                         capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and "--pairs must be >= 1, got 0" in bad.stderr
    out = subprocess.run([sys.executable, script, "--subset", "20", "--pairs", "5", "--out", str(tmp_path)],
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    report = json.loads((tmp_path / "top1_anatomy.json").read_text())
    assert report["queries"] == 20 and report["pairs"] == 5 and report["duplicate_bodies"] >= 0
    assert 0 <= report["near_empty_share_top1"] <= 1 and -1 <= report["cosine_top1_positive_body_only_median"] <= 1
    # on wiki-car the shared "Title: " prefix makes a same-article pair look closer (same data, same weights)
    assert report["cosine_top1_positive_body_only_median"] < report["cosine_top1_positive_titled_median"]
    assert list(report["windows"]) == ["1-1", "2-4", "5-30", "30-100"]
    for w in report["windows"].values():  # the four classes cover every relation
        assert w["relevant"] + w["same_topic"] + w["other-section"] + w["other-article"] == pytest.approx(1.0)
