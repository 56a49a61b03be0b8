"""The pretraining bench: tokenizer, tiny model, pretraining loop, checkpoint cache, protocols."""
from __future__ import annotations

import random

import pytest
import torch

from retrlab.artifacts import Checkpoint, cached_pretraining, checkpoint_name
from retrlab.pretraining.bench import (TinyCrossEncoder, PretrainConfig, ProtocolConfig,
                                       TinyConfig, as_biencoder, bench_tokenizer,
                                       corpus_texts, low_label_data, new_mlm, pretrain,
                                       protocol_table, reranker_loss, run_protocol,
                                       run_reranker_protocol, train_wordpiece)
from retrlab.data.wikicar import read_pages
from retrlab.train import Batch

TINY = TinyConfig(vocab_size=200, layers=1, hidden=16, heads=2, query_max_length=16,
                  passage_max_length=24)


pytestmark = pytest.mark.usefixtures("one_thread")




def real_lines(n: int = 300) -> list[str]:
    """Lines of real Wikipedia text (the raw dump wiki-car is built from)."""
    pages, _ = read_pages()
    lines = [line for page in pages for line in page.text.splitlines() if len(line) > 80]
    return lines[:n]


def test_wordpiece_is_deterministic_on_real_text_and_bert_shaped():
    texts = real_lines()
    a, b = train_wordpiece(texts, 500), train_wordpiece(texts, 500)
    assert len(a) == 500 and a.get_vocab() == b.get_vocab()  # same pieces, same ids
    assert [a.convert_ids_to_tokens(i) for i in range(5)] == ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    pieces = a.convert_ids_to_tokens(list(range(5, 500)))
    assert pieces == sorted(pieces)  # canonical numbering after the special tokens
    ids = a("cats", "rivers")["input_ids"]
    assert ids[0] == a.cls_token_id and ids.count(a.sep_token_id) == 2
    assert a("Cats sleep")["input_ids"] == a("cats SLEEP")["input_ids"]  # lower-cased
    with pytest.raises(ValueError, match="too small"):
        train_wordpiece(texts, 10)


def test_tokenizer_cache_is_reused(home, toy_data):
    first = bench_tokenizer(toy_data, 200)
    folders = list((home / "pretraining").iterdir())
    assert len(folders) == 1 and folders[0].name.startswith("tokenizer-200-")
    assert bench_tokenizer(toy_data, 200).get_vocab() == first.get_vocab()
    assert not [p for p in (home / "pretraining").iterdir() if p.name.startswith(".")]  # no temp left


def test_biencoder_shares_the_mlm_encoder(toy_data):
    tok = train_wordpiece(corpus_texts(toy_data), 200)
    mlm = new_mlm(tok, TINY)
    model = as_biencoder(mlm.bert, tok, TINY)
    assert model.query_model is mlm.bert and model.dim == 16 and model.passage_max_length == 24
    assert torch.equal(new_mlm(tok, TINY).bert.embeddings.word_embeddings.weight,
                       mlm.bert.embeddings.word_embeddings.weight)  # same seed, same init


def test_low_label_data_is_seeded(toy_data):
    low = low_label_data(toy_data, 0.5, seed=1)
    assert len(low.qids("train")) == 2 and set(low.qids("train")) <= set(toy_data.qids("train"))
    assert low.qids("train") == low_label_data(toy_data, 0.5, seed=1).qids("train")
    assert low.qids("test") == toy_data.qids("test")
    with pytest.raises(ValueError, match="fraction"):
        low_label_data(toy_data, 0.0)


def pair_task(rng: random.Random, batch_size: int):
    texts = ["cats eat meat", "rivers flow downhill", "stars fuse hydrogen", "cats sleep a lot"]
    chosen = rng.sample(texts, batch_size)
    return [t.split()[0] for t in chosen], chosen


def test_pretrain_is_seeded_and_learns(toy_data):
    tok = train_wordpiece(corpus_texts(toy_data), 200)
    config = PretrainConfig(steps=12, batch_size=3, lr=3e-3, mlm_weight=0.5)
    runs = []
    for _ in range(2):
        mlm = new_mlm(tok, TINY)
        runs.append(pretrain(mlm, tok, corpus_texts(toy_data), config, task=pair_task, tiny=TINY,
                             progress=False))
    assert [r["loss"] for r in runs[0].rows] == [r["loss"] for r in runs[1].rows]
    assert {"task", "mlm", "seconds"} <= set(runs[0].rows[0])
    task_loss = runs[0].series("task")[1]
    assert sum(task_loss[-3:]) < sum(task_loss[:3])
    with pytest.raises(ValueError, match="nothing to train"):
        pretrain(mlm, tok, [], PretrainConfig(steps=1), tiny=TINY)


def test_checkpoint_cache_builds_once(home, toy_data):
    tok = train_wordpiece(corpus_texts(toy_data), 200)
    calls = []

    def build() -> Checkpoint:
        calls.append(1)
        mlm = new_mlm(tok, TINY)
        history = pretrain(mlm, tok, corpus_texts(toy_data), PretrainConfig(steps=2, batch_size=2,
                           mlm_weight=1.0), tiny=TINY, progress=False)
        return Checkpoint(mlm, history, {"head.bias": torch.tensor([0.5])})

    a = cached_pretraining("mlm", build, 2, 0, tok, TINY)
    b = cached_pretraining("mlm", build, 2, 0, tok, TINY)
    assert len(calls) == 1 and a.history.rows == b.history.rows and len(a.history.rows) == 2
    assert torch.equal(a.state["head.bias"], torch.tensor([0.5]))
    embeddings = [c.mlm.bert.embeddings.word_embeddings.weight for c in (a, b)]
    assert torch.equal(*embeddings)
    assert checkpoint_name("mlm", 2, 0, tok, TINY, smoke=True).endswith("-smoke")
    assert checkpoint_name("ict", 2, 0, tok, TINY) != checkpoint_name("ict", 2, 1, tok, TINY)


def test_reranker_loss_is_listwise_over_positive_and_negatives(toy_data):
    tok = train_wordpiece(corpus_texts(toy_data), 200)
    model = TinyCrossEncoder(new_mlm(tok, TINY).bert, tok, max_length=32).eval()  # no dropout
    batch = Batch(["q0", "q1"], ["cats diet", "rivers"], ["c1", "r1"], [["r3"], ["c4"]])
    loss = reranker_loss(model, toy_data, batch)
    s = model(["cats diet", "cats diet", "rivers", "rivers"],
              toy_data.passage_texts(["c1", "r3", "r1", "c4"]))
    expected = torch.nn.functional.cross_entropy(s.view(2, 2), torch.zeros(2, dtype=torch.long))
    assert loss.item() == pytest.approx(expected.item(), abs=1e-6)
    with pytest.raises(ValueError, match="same number of negatives"):
        reranker_loss(model, toy_data, Batch(["q0", "q1"], ["a", "b"], ["c1", "r1"], [["r3"], []]))


def test_protocols_run_end_to_end_on_toy_data(toy_data):
    tok = train_wordpiece(corpus_texts(toy_data), 200)
    config = ProtocolConfig(steps=2, batch_size=2, low_label_fraction=0.5)
    dense = run_protocol(as_biencoder(new_mlm(tok, TINY).bert, tok, TINY), toy_data, config, progress=False)
    assert list(dense.metrics) == ["zero-shot", "fine-tuned", "fine-tuned 50%"]
    assert set(dense.runs["zero-shot"]) == set(toy_data.qids("test"))
    rerank = run_reranker_protocol(TinyCrossEncoder(new_mlm(tok, TINY).bert, tok, 32), toy_data, config,
                                   depth=3, negatives=1, progress=False)
    assert all(len(r) <= 3 for r in rerank.runs["fine-tuned"].values())
    table = protocol_table({"random": dense, "rr": rerank})
    assert table.splitlines()[1].startswith("random") and len(table.splitlines()) == 3


def test_protocol_table_marks_skipped_stages():
    from retrlab.pretraining.bench import ProtocolResult

    row = {"MRR@10": 0.5, "nDCG@10": 0.25}
    full = ProtocolResult({"zero-shot": row, "fine-tuned": row})
    skipped = ProtocolResult({"fine-tuned": {"MRR@10": 0.125, "nDCG@10": 0.0}})
    lines = protocol_table({"skipped": skipped, "full": full}, ("MRR@10", "nDCG@10")).splitlines()
    assert "zero-shot" in lines[0].split("|")[1] and "fine-tuned" in lines[0].split("|")[3]
    assert [c.strip() for c in lines[1].split("|")] == ["skipped", "—", "—", "0.125", "0.000"]
    assert [c.strip() for c in lines[2].split("|")] == ["full", "0.500", "0.250", "0.500", "0.250"]


class Payload:
    """Unpickling it would create a file."""

    def __init__(self, marker) -> None:
        self.marker = marker

    def __reduce__(self):
        return type(self.marker).touch, (self.marker,)


def test_a_cached_state_with_a_pickled_payload_is_refused_unexecuted(tmp_path):
    from retrlab.artifacts import load_tensors
    from retrlab.train import CheckpointError

    marker = tmp_path / "pwned"
    torch.save({"head.bias": torch.zeros(1), "evil": Payload(marker)}, tmp_path / "state.pt")
    with pytest.raises(CheckpointError, match="state.pt holds more than tensors"):
        load_tensors(tmp_path / "state.pt")
    assert not marker.exists()
    torch.save({"head.bias": torch.ones(1)}, tmp_path / "clean.pt")
    assert torch.equal(load_tensors(tmp_path / "clean.pt")["head.bias"], torch.ones(1))
