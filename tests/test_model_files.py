"""Saved models: the sentence-transformers folder with its card, older saves, and damaged or missing files.

A saved BiEncoder must load in sentence-transformers and transformers with the same vectors,
folders written by the previous layout must still load, a save that fails halfway must leave the
previous save intact, and every missing or damaged file must be named in the error.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from sentence_transformers import SentenceTransformer
from test_beir import write_beir
from transformers import AutoModel

from retrlab import model_files
from retrlab.cli import main
from retrlab.encoders import BiEncoder
from retrlab.model_card import ModelCard
from retrlab.train import TrainConfig

pytestmark = pytest.mark.usefixtures("one_thread", "float32")  # compared with float32 references

# the second text is longer than the query limit below (8 tokens) and the passage limit (16)
TEXTS = ["hello world", "Anarchism: a political philosophy and movement " * 12, "Cats sleep a lot.", "A"]


def tiny(**kwargs) -> BiEncoder:
    return BiEncoder.tiny(layers=1, hidden=32, heads=2, **{"query_max_length": 8, "passage_max_length": 16,
                                                          **kwargs})


def separate_towers(**kwargs) -> BiEncoder:
    """Separate towers that differ (a fresh copy would give the same vectors as a shared tower)."""
    model = tiny(shared=False, **kwargs)
    with torch.no_grad():
        for p in model.passage_model.parameters():
            p.add_(0.01 * torch.randn_like(p))
    return model


def save_old_layout(model: BiEncoder, folder: Path) -> Path:
    """``BiEncoder.save_pretrained`` as it was before 2026-11-29, kept here verbatim to prove that
    the folders it wrote still load."""
    folder = Path(folder)
    model.query_model.save_pretrained(folder / "query")
    if not model.shared:
        model.passage_model.save_pretrained(folder / "passage")
    model.tokenizer.save_pretrained(folder / "query")
    (folder / "retrlab_biencoder.json").write_text(json.dumps(model.settings()))
    return folder


def assert_same_vectors(a: BiEncoder, b: BiEncoder) -> None:
    np.testing.assert_allclose(a.encode_queries(TEXTS), b.encode_queries(TEXTS), atol=1e-6)
    np.testing.assert_allclose(a.encode_passages(TEXTS, progress=False), b.encode_passages(TEXTS, progress=False),
                               atol=1e-6)


# --- other libraries read the folder --------------------------------------------------------------
@pytest.mark.parametrize("pooling", ["mean", "cls"])
@pytest.mark.parametrize("normalize", [True, False])
def test_sentence_transformers_reproduces_a_shared_model(tmp_path, pooling, normalize):
    model = tiny(pooling=pooling, normalize=normalize)
    st = SentenceTransformer(str(model.save_pretrained(tmp_path / "m")), device="cpu")
    queries, passages = model.encode_queries(TEXTS), model.encode_passages(TEXTS, progress=False)
    np.testing.assert_allclose(st.encode_query(TEXTS), queries, atol=1e-5)  # cut at 8 tokens
    np.testing.assert_allclose(st.encode_document(TEXTS), passages, atol=1e-5)  # cut at 16
    np.testing.assert_allclose(st.encode(TEXTS), passages, atol=1e-5)
    assert not np.allclose(queries[1], passages[1])  # the long text: each side kept its own limit


@pytest.mark.parametrize("pooling, normalize", [("cls", False), ("mean", True)])
def test_sentence_transformers_reproduces_separate_towers(tmp_path, pooling, normalize):
    model = separate_towers(pooling=pooling, normalize=normalize)
    st = SentenceTransformer(str(model.save_pretrained(tmp_path / "m")), device="cpu")
    assert json.loads((tmp_path / "m" / "modules.json").read_text())[0]["type"].endswith("Router")
    np.testing.assert_allclose(st.encode_query(TEXTS), model.encode_queries(TEXTS), atol=1e-5)
    np.testing.assert_allclose(st.encode_document(TEXTS), model.encode_passages(TEXTS, progress=False), atol=1e-5)


def test_sentence_transformers_reproduces_minilm(tmp_path, _minilm):
    st = SentenceTransformer(str(_minilm.save_pretrained(tmp_path / "m")), device="cpu")
    np.testing.assert_allclose(st.encode_query(TEXTS), _minilm.encode_queries(TEXTS), atol=1e-5)
    np.testing.assert_allclose(st.encode_document(TEXTS), _minilm.encode_passages(TEXTS, progress=False), atol=1e-5)


def test_automodel_loads_a_shared_save(tmp_path):
    model = tiny()
    loaded = AutoModel.from_pretrained(model.save_pretrained(tmp_path / "m"))
    batch = model.tokenize(TEXTS, 16)
    model.eval()  # no dropout, as in the loaded model
    with torch.no_grad():
        torch.testing.assert_close(loaded(**batch).last_hidden_state, model.query_model(**batch).last_hidden_state)


def test_retrlab_loads_its_own_save_back(tmp_path):
    for model in (tiny(pooling="mean"), separate_towers()):
        loaded = BiEncoder.from_pretrained(model.save_pretrained(tmp_path / f"m{model.shared}"))
        assert loaded.settings() == model.settings()
        assert_same_vectors(loaded, model)


@pytest.mark.parametrize("shared", [True, False])
def test_a_folder_saved_by_the_old_layout_still_loads(tmp_path, shared):
    model = tiny(shared=True) if shared else separate_towers()
    loaded = BiEncoder.from_pretrained(save_old_layout(model, tmp_path / "old"))
    assert loaded.settings() == model.settings()
    assert_same_vectors(loaded, model)


# --- the model card -------------------------------------------------------------------------------
def read_card(folder: Path) -> tuple[dict, str]:
    _, header, body = (folder / "README.md").read_text().split("---\n", 2)
    return yaml.safe_load(header), body


def test_the_card_holds_the_run_s_settings_and_metrics(tmp_path):
    card = ModelCard(base_model="sentence-transformers/all-MiniLM-L6-v2", method="DPR: in-batch negatives",
                     config=TrainConfig(steps=7, batch_size=4, lr=3e-5, tau=0.05),
                     settings={"sampler": "in-batch", "precision": "float32"}, data="wiki-car", split="test",
                     metrics={"MRR@10": 0.61234, "R@20": 0.875})
    header, body = read_card(tiny().save_pretrained(tmp_path / "m", card=card))
    assert header["base_model"] == "sentence-transformers/all-MiniLM-L6-v2"
    assert header["library_name"] == "sentence-transformers" and "sentence-transformers" in header["tags"]
    assert "Method: DPR: in-batch negatives" in body
    for row in ("| steps | 7 |", "| batch_size | 4 |", "| lr | 3e-05 |", "| tau | 0.05 |",
                "| sampler | in-batch |", "| precision | float32 |", "| MRR@10 | 0.6123 |", "| R@20 | 0.8750 |"):
        assert row in body, row
    assert "Measured on the `test` split in the run that trained this model." in body
    assert "- Data: wiki-car\n- Metrics measured on its `test` split" in body
    assert "- Pooling: the [CLS] token's vector" in body and "- Token limits: queries 8, passages 16" in body


def test_a_card_without_metrics_has_no_metrics_section(tmp_path):
    header, body = read_card(tiny().save_pretrained(tmp_path / "m"))
    assert "base_model" not in header
    assert "## Test metrics" not in body and "## Training" not in body and "## Data" not in body
    assert "## Model" in body and "SentenceTransformer(" in body


@pytest.mark.parametrize("metrics, config", [({"MRR@10": float("nan")}, None), ({"MRR@10": "high"}, None),
                                             ({}, {"steps": 3})])
def test_a_card_refuses_values_it_cannot_state(metrics, config):
    with pytest.raises((ValueError, TypeError), match=r"ModelCard\.(metrics\['MRR@10'\]|config)"):
        ModelCard(metrics=metrics, config=config)


# --- atomic saves ---------------------------------------------------------------------------------
def test_a_failed_save_leaves_the_previous_save_intact(tmp_path, monkeypatch):
    folder = tmp_path / "m"
    first = separate_towers()
    first.save_pretrained(folder)
    second = separate_towers(passage_max_length=12)  # other weights, other settings
    with torch.no_grad():
        for p in second.parameters():
            p.mul_(2.0)

    def fail(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(second.passage_model, "save_pretrained", fail)  # the query tower is written first
    with pytest.raises(OSError, match="disk full"):
        second.save_pretrained(folder)
    assert_same_vectors(BiEncoder.from_pretrained(folder), first)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m"]  # no temporary folder left behind


def test_a_save_over_a_folder_of_other_files_is_refused(tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(FileExistsError, match=r"holds files that are not a saved BiEncoder"):
        tiny().save_pretrained(tmp_path)
    assert (tmp_path / "notes.txt").read_text() == "mine"


# --- token limits ---------------------------------------------------------------------------------
LIMIT = r"passage_max_length=100000 is above the model's position limit: it reads at most 512 tokens"


def test_a_token_limit_above_the_position_limit_is_named_at_once(tmp_path):
    with pytest.raises(ValueError, match=LIMIT):
        tiny(passage_max_length=100000)
    model = tiny()
    with pytest.raises(ValueError, match=r"query_max_length=513 is above"):
        model.query_max_length = 513
    model.passage_max_length = 512  # the limit itself is fine
    folder = model.save_pretrained(tmp_path / "m")
    settings = json.loads((folder / "retrlab_biencoder.json").read_text())
    (folder / "retrlab_biencoder.json").write_text(json.dumps({**settings, "passage_max_length": 100000}))
    with pytest.raises(ValueError, match=LIMIT):
        BiEncoder.from_pretrained(folder)


def test_the_cli_names_a_max_length_above_the_position_limit(tmp_path, capsys):
    folder = tiny().save_pretrained(tmp_path / "m")
    code = main(["eval", "--beir", str(write_beir(tmp_path / "beir")), "--model", str(folder),
                 "--max-length", "100000"])
    assert code == 2
    assert "passage_max_length=100000 is above the model's position limit" in capsys.readouterr().err


# --- missing and damaged files --------------------------------------------------------------------
@pytest.mark.parametrize("layout", ["new", "old"])
def test_a_missing_passage_tower_is_named(tmp_path, layout):
    model = separate_towers()
    folder = model.save_pretrained(tmp_path / "m") if layout == "new" else save_old_layout(model, tmp_path / "m")
    tower = folder / ("document_0_Transformer" if layout == "new" else "passage")
    shutil.rmtree(tower)
    with pytest.raises(FileNotFoundError, match=rf"separate query and passage towers, but its passage tower "
                                                rf"{tower} is missing"):
        BiEncoder.from_pretrained(folder)


def test_damaged_files_are_named(tmp_path):
    folder = tiny().save_pretrained(tmp_path / "m")
    settings = folder / "retrlab_biencoder.json"
    good = settings.read_text()
    settings.write_text(good[:-5])
    with pytest.raises(ValueError, match=rf"{settings} is not valid JSON"):
        BiEncoder.from_pretrained(folder)
    settings.write_text(json.dumps({**json.loads(good), "pooling_mode": "max"}))
    with pytest.raises(ValueError, match=rf"{settings}: unknown keys \['pooling_mode'\]"):
        BiEncoder.from_pretrained(folder)
    settings.write_text(good)
    weights = folder / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])
    with pytest.raises(ValueError, match=rf"{weights} is not a readable safetensors file"):
        BiEncoder.from_pretrained(folder)


@pytest.mark.parametrize("layout", ["new", "old"])
def test_loading_a_saved_tiny_model_prints_no_load_report(tmp_path, capfd, layout):
    model = tiny()
    folder = model.save_pretrained(tmp_path / "m") if layout == "new" else save_old_layout(model, tmp_path / "m")
    capfd.readouterr()
    loaded = BiEncoder.from_pretrained(folder)
    out, err = capfd.readouterr()
    assert "MISSING" not in out + err and "LOAD REPORT" not in out + err
    assert loaded.query_model.pooler is None  # no pooler with random weights was added


# --- local paths and hub names --------------------------------------------------------------------
@pytest.fixture
def hub_calls(monkeypatch):
    """Records every AutoModel.from_pretrained call of the loading code (and fails it)."""
    calls = []

    def record(name, **kwargs):
        calls.append((str(name), kwargs))
        raise OSError("not found")

    monkeypatch.setattr(model_files.AutoModel, "from_pretrained", record)
    return calls


def test_a_missing_local_looking_path_never_reaches_the_hub(tmp_path, monkeypatch, hub_calls):
    (tmp_path / "models").mkdir()
    monkeypatch.chdir(tmp_path)
    for name in ["./nope", "~/no-such-retrlab-model", "a/b/c", "models/mine", str(tmp_path / "x"), "bad name!",
                 tmp_path / "y"]:
        with pytest.raises(FileNotFoundError, match=r"model path .* does not exist"):
            BiEncoder.from_pretrained(name)
    assert hub_calls == []


def test_a_hub_name_offline_says_the_machine_is_offline(monkeypatch, hub_calls):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    monkeypatch.setattr(model_files.socket, "create_connection", lambda *a, **k: (_ for _ in ()).throw(
        OSError("Name or service not known")))
    with pytest.raises(FileNotFoundError, match=r"'org/model' not found: .* this machine appears offline "
                                                r"\(huggingface\.co cannot be reached"):
        BiEncoder.from_pretrained("org/model")
    assert hub_calls == [("org/model", {"local_files_only": True})]  # the local cache only: no retries


def test_a_hub_name_goes_to_the_hub_when_online(monkeypatch, hub_calls):
    monkeypatch.setattr(model_files, "offline_reason", lambda: None)
    with pytest.raises(FileNotFoundError, match=r"'org/model' not found: .* the Hugging Face hub could not provide it"):
        BiEncoder.from_pretrained("org/model")
    assert hub_calls == [("org/model", {"local_files_only": True}), ("org/model", {})]
