"""Shared fixtures: offline Hugging Face, one MiniLM per session, a hand-made toy dataset."""
from __future__ import annotations

import copy
import ipaddress
import os
import socket

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # every model comes from an installed package
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import torch  # noqa: E402
from retrlab.data.dataset import RetrievalData  # noqa: E402
from retrlab.encoders import BiEncoder  # noqa: E402

_real_connect = socket.socket.connect


def _loopback_only_connect(sock: socket.socket, address) -> None:
    """The offline guarantee: tests may talk to servers they start on 127.0.0.1, nothing else."""
    host = address[0] if isinstance(address, tuple) else None
    if host is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
        try:
            loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
        except ValueError:
            loopback = False
        if not loopback:
            raise RuntimeError(f"network access blocked in tests: connect to {address!r}")
    return _real_connect(sock, address)


socket.socket.connect = _loopback_only_connect
from retrlab.encoders import BiEncoder  # noqa: E402


@pytest.fixture
def one_thread():
    """Tiny models run faster on one thread, and far faster when the cores are shared
    (use with ``pytestmark = pytest.mark.usefixtures("one_thread")``)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def home(tmp_path, monkeypatch):
    """An empty cache folder of the test's own."""
    monkeypatch.setenv("RETRLAB_HOME", str(tmp_path))
    return tmp_path


@pytest.fixture(scope="session")
def _minilm() -> BiEncoder:
    return BiEncoder.minilm()


@pytest.fixture
def minilm(_minilm) -> BiEncoder:
    """A fresh copy per test, so a test that trains does not change another's model."""
    return copy.deepcopy(_minilm)


TOY_PASSAGES = {
    # article "Cats": sections Diet (3 passages) and Sleep (2)
    "c1": ("Cats", "Cats / Diet", "Cats are obligate carnivores and eat meat such as mice and birds."),
    "c2": ("Cats", "Cats / Diet", "Domestic cats are fed dry kibble or wet food with taurine."),
    "c3": ("Cats", "Cats / Diet", "A cat cannot taste sweetness and needs animal protein."),
    "c4": ("Cats", "Cats / Sleep", "Cats sleep twelve to sixteen hours a day, mostly at dawn."),
    "c5": ("Cats", "Cats / Sleep", "Sleeping cats twitch while dreaming in the REM phase."),
    # article "Rivers": sections Flow (2) and Floods (2)
    "r1": ("Rivers", "Rivers / Flow", "A river flows downhill from its source to its mouth."),
    "r2": ("Rivers", "Rivers / Flow", "The current of a river is fastest near the middle."),
    "r3": ("Rivers", "Rivers / Floods", "Floods happen when heavy rain makes a river overflow its banks."),
    "r4": ("Rivers", "Rivers / Floods", "Levees and dams protect towns from river floods."),
    # article "Stars": one section, used as the test split
    "s1": ("Stars", "Stars / Fusion", "Stars shine because hydrogen fuses into helium in the core."),
    "s2": ("Stars", "Stars / Fusion", "Nuclear fusion in a star releases enormous energy."),
    "s3": ("Stars", "Stars / Death", "Massive stars end their lives as supernovae."),
}


def make_toy_data() -> RetrievalData:
    corpus = {pid: {"title": t, "text": x, "article": t, "section": s}
              for pid, (t, s, x) in TOY_PASSAGES.items()}
    sections = sorted({s for _, s, _ in TOY_PASSAGES.values()})
    queries = {f"q{i}": s for i, s in enumerate(sections)}
    qrels = {q: {p: 1 for p, (_, s, _) in TOY_PASSAGES.items() if s == text} for q, text in queries.items()}
    positives = {q: [sorted(rel)[0]] for q, rel in qrels.items()}
    split_of = {q: "test" if text.startswith("Stars") else "train" for q, text in queries.items()}
    splits = {s: [q for q in queries if split_of[q] == s] for s in ("train", "test")}
    split_pids = {"train": [p for p in corpus if not p.startswith("s")],
                  "test": [p for p in corpus if p.startswith("s")]}
    return RetrievalData("toy", corpus, queries, qrels, positives, splits, split_pids)


@pytest.fixture
def toy_data() -> RetrievalData:
    return make_toy_data()


def make_tiny_cross_encoder(seed: int = 0, hidden: int = 32, head: str = "classifier"):
    """A one-layer cross-encoder with MiniLM's tokenizer: fast enough for unit tests."""
    import torch
    from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification, BertModel

    from retrlab.encoders import CrossEncoder, minilm_path

    tokenizer = AutoTokenizer.from_pretrained(minilm_path())
    torch.manual_seed(seed)
    config = BertConfig(vocab_size=len(tokenizer), hidden_size=hidden, num_hidden_layers=1,
                        num_attention_heads=2, intermediate_size=64, num_labels=1)
    model = BertForSequenceClassification(config) if head == "classifier" else BertModel(config)
    return CrossEncoder(model, tokenizer, max_length=48, head=head)
