"""Continued pretraining (MiniLM + each objective), the cached pretraining artifacts, the study's effects."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from retrlab.artifacts import cached_result
from retrlab.cache import CacheRebuildWarning
from retrlab.pretraining import continued as cont
from retrlab.pretraining.bench import ProtocolResult
from retrlab.pretraining.comparison import EFFECTS, Study, StudyBudget, effects, study_budget, study_table
from retrlab.pretraining.condenser import masked_lm_sum, span_contrastive_loss

pytestmark = pytest.mark.usefixtures("one_thread")
ONE_LAYER = cont.ContinuedBudget(steps=2, batch_size=2, layers=1)


def test_the_start_is_minilm_with_a_tied_seeded_mlm_head(minilm):
    mlm = cont.minilm_mlm(layers=6, seed=3)
    reference = minilm.query_model.state_dict()
    for name, weight in mlm.bert.state_dict().items():  # the encoder: exactly MiniLM's weights
        assert torch.equal(reference[name], weight), name
    assert mlm.cls.predictions.decoder.weight is mlm.bert.embeddings.word_embeddings.weight  # BERT's tying
    transform = mlm.cls.predictions.transform.dense.weight
    assert torch.equal(transform, cont.minilm_mlm(layers=6, seed=3).cls.predictions.transform.dense.weight)
    assert not torch.equal(transform, cont.minilm_mlm(layers=6, seed=4).cls.predictions.transform.dense.weight)
    short = cont.minilm_mlm(layers=1)
    assert len(short.bert.encoder.layer) == 1 and mlm.training
    assert torch.equal(short.bert.encoder.layer[0].output.dense.weight, mlm.bert.encoder.layer[0].output.dense.weight)


def test_the_condenser_head_reads_halfway_up_the_backbone():
    assert cont.condenser_config(6, 1.0).skip_from == 3  # official: layer 6 of BERT's 12
    assert cont.condenser_config(1, 0.0).skip_from == 0  # one layer: the head reads the embeddings
    assert cont.condenser_config(6, 0.0).co_weight == 0.0


def test_masked_lm_sum_runs_the_head_on_masked_positions_only_and_matches_the_full_projection():
    torch.manual_seed(0)
    mlm = cont.minilm_mlm(layers=1).eval()
    hidden = torch.randn(2, 5, mlm.config.hidden_size)
    labels = torch.tensor([[-100, 7, -100, -100, 2001], [-100, -100, -100, 1012, -100]])
    full = F.cross_entropy(mlm.cls(hidden).flatten(0, 1), labels.flatten(), ignore_index=-100, reduction="sum")
    assert masked_lm_sum(mlm, hidden, labels).item() == pytest.approx(full.item(), rel=1e-6)
    assert masked_lm_sum(mlm, hidden, torch.full((2, 5), -100)).item() == 0.0


def test_span_loss_of_identical_spans_sits_at_its_uniform_floor():
    # every CLS equal: each span's softmax over the 2n - 1 others is uniform, loss = log(2n - 1)
    assert span_contrastive_loss(torch.ones(8, 4)).item() == pytest.approx(math.log(7), abs=1e-6)


def test_continued_checkpoint_is_cached_verified_and_rebuilt_when_damaged(home, toy_data):
    first = cont.continued_checkpoint("MLM", toy_data, ONE_LAYER, seed=0, progress=False)
    again = cont.continued_checkpoint("MLM", toy_data, ONE_LAYER, seed=0, progress=False)
    assert first.history.rows == again.history.rows and len(first.history.rows) == 2
    folder = next((home / "pretraining").glob("v1-continued-mlm-steps2-seed0-minilm1-*"))
    weights = next((folder / "mlm").glob("*.safetensors"))
    cut = weights.read_bytes()[:100]
    weights.unlink()  # a new file: the loaded models still map the old one's pages
    weights.write_bytes(cut)  # cut short: the manifest no longer matches
    with pytest.warns(CacheRebuildWarning, match="damaged"):
        rebuilt = cont.continued_checkpoint("MLM", toy_data, ONE_LAYER, seed=0, progress=False)
    for a, b in zip(first.mlm.parameters(), rebuilt.mlm.parameters()):  # seeded: the same weights again
        assert torch.equal(a, b)
    with pytest.raises(ValueError, match="unknown continued-pretraining method 'BFS'"):
        cont.continued_checkpoint("BFS", toy_data, ONE_LAYER, progress=False)


def test_cached_result_builds_once_and_recomputes_a_damaged_entry(home):
    calls = []

    def build() -> dict:
        calls.append(1)
        return {"MRR@10": 0.5}

    assert cached_result("study/row", build) == {"MRR@10": 0.5}
    assert cached_result("study/row", build) == {"MRR@10": 0.5} and len(calls) == 1
    (home / "results" / "study" / "row" / "result.json").write_text('{"MRR@10": 0.9}')  # edited by hand
    with pytest.warns(CacheRebuildWarning):
        assert cached_result("study/row", build) == {"MRR@10": 0.5}
    assert len(calls) == 2


def _result(toy_data, first: bool) -> ProtocolResult:
    """A run putting each test query's relevant passage first (RR 1) or second (RR 1/2)."""
    runs = {}
    for q in toy_data.qids("test"):
        relevant = sorted(toy_data.qrels[q])[0]
        other = next(p for p in toy_data.search_pids("test") if p not in toy_data.qrels[q])
        runs[q] = {relevant: 2.0, other: 1.0} if first else {other: 2.0, relevant: 1.0}
    mrr = 1.0 if first else 0.5
    return ProtocolResult({"zero-shot": {"MRR@10": mrr}}, {"zero-shot": runs})


def test_effects_bootstrap_the_seed_averaged_gap_and_report_each_seed_and_the_spread(toy_data):
    budget = StudyBudget(1, 1, 1, 1e-4)
    study = Study("scratch", budget, toy_data)
    study.results = {seed: {"ICT": _result(toy_data, True), "MLM (mean)": _result(toy_data, False)}
                     for seed in (0, 1)}
    (effect,) = effects(study, "zero-shot")  # only ICT vs MLM has both rows here
    assert (effect.label, effect.a, effect.b) == EFFECTS[0][:3]
    assert effect.gap == pytest.approx(0.5) and effect.low == pytest.approx(0.5) and effect.high == pytest.approx(0.5)
    assert effect.per_seed == [0.5, 0.5] and effect.spread == 0.0 and effect.verdict == "reproduced"
    study.results[1]["ICT"] = _result(toy_data, False)  # seed 1: no gap
    (effect,) = effects(study, "zero-shot")
    assert effect.per_seed == [0.5, 0.0] and effect.gap == pytest.approx(0.25)
    assert effect.spread == pytest.approx(np.std([0.5, 0.0], ddof=1))  # the per-seed gaps' spread: 0.354
    assert effect.low > 0 and not effect.robust and effect.verdict == "not reproduced"  # gap 0.25 < spread
    assert study_table(study).splitlines()[1].split()[-3:] == ["0.750", "±", "0.354"]  # ICT: RR 1 and 1/2


def test_study_budgets_are_named_and_unknown_protocols_refused():
    assert study_budget("continued", smoke=True).continued.layers == 1
    assert study_budget("scratch", smoke=False).pretrain_steps == 24
    assert study_budget("continued", smoke=False).key() != study_budget("continued", smoke=True).key()
    with pytest.raises(ValueError, match="protocol must be one of"):
        study_budget("from-bert", smoke=False)


def test_a_study_row_is_computed_once_then_reloaded_with_its_runs(home, toy_data, monkeypatch):
    from retrlab.pretraining import comparison

    calls = []
    protocol = comparison.two_stage_protocol
    monkeypatch.setattr(comparison, "two_stage_protocol", lambda *a: calls.append(1) or protocol(*a))
    budget = study_budget("continued", smoke=True)
    rows = ["as is (mean)", "MLM (mean)"]
    first = comparison.run_study("continued", toy_data, (0,), budget=budget, rows=rows)
    again = comparison.run_study("continued", toy_data, (0,), budget=budget, rows=rows)
    assert len(calls) == 2 and first.stages == ["zero-shot", "fine-tuned"]
    for row in rows:
        assert again.results[0][row].runs == first.results[0][row].runs
        assert again.results[0][row].metrics == first.results[0][row].metrics
    assert set(first.results[0]["MLM (mean)"].runs["zero-shot"]) == set(toy_data.qids("test"))


def test_the_cli_refuses_an_unknown_protocol(capsys):
    from retrlab.cli import main

    with pytest.raises(SystemExit) as exit_info:
        main(["pretraining-study", "--protocol", "from-bert"])
    assert exit_info.value.code == 2 and "invalid choice: 'from-bert'" in capsys.readouterr().err


def test_a_study_built_by_two_processes_has_the_numbers_of_one_built_in_order(home, monkeypatch):
    """``run_studies`` farms row groups out to two processes; each row is seeded by its own seed, so the
    runs and metrics equal those of the same study built row by row in this process (one thread, as the
    build processes run)."""
    from retrlab.pretraining.comparison import checkpoint_groups, run_studies

    assert checkpoint_groups("scratch", ["MLM (mean)", "ICT", "MLM (CLS)", "coCondenser", "Condenser"]) == [
        ["MLM (mean)", "MLM (CLS)"], ["ICT"], ["coCondenser", "Condenser"]]
    from retrlab.data import load_wikicar

    data = load_wikicar(seed=0).subset({"train": 60, "dev": 5, "test": 10})  # the smallest the bench's batch of 32 fits
    seeds, budgets = (0, 1), {"scratch": StudyBudget(2, 2, 4, 2e-4)}
    rows = {"scratch": ["random init (mean)", "MLM (mean)", "ICT", "MLM (CLS)"]}  # three groups: MLM's rows go together
    parallel = run_studies(data, seeds, protocols=("scratch",), smoke=True, workers=2, budgets=budgets,
                           rows=rows, progress=False)["scratch"]
    monkeypatch.setenv("RETRLAB_HOME", str(home / "in-order"))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        in_order = run_studies(data, seeds, protocols=("scratch",), smoke=True, workers=1, budgets=budgets,
                               rows=rows, progress=False)["scratch"]
    finally:
        torch.set_num_threads(threads)
    for seed in seeds:
        assert set(parallel.results[seed]) == set(rows["scratch"]) and all(s > 0 for s in parallel.seconds[seed].values())
        for row in rows["scratch"]:
            assert parallel.results[seed][row].runs == in_order.results[seed][row].runs, (seed, row)
            assert parallel.results[seed][row].metrics == in_order.results[seed][row].metrics
    assert parallel.results[0]["ICT"].runs != parallel.results[1]["ICT"].runs  # the seeds differ: not vacuous
    with pytest.raises(ValueError, match="workers must be >= 1, got 0"):
        run_studies(data, seeds, workers=0)
