"""Test helpers, imported one way: ``from tests.helpers import make_toy_data, make_tiny_cross_encoder, toy_pool``.

The toy dataset is hand-made: three articles, five sections, one query per section (its title), the
"Stars" article as the test split; every passage of a section is relevant to its query, one of them
labelled.
"""
from __future__ import annotations

import numpy as np

from retrlab.data.dataset import RetrievalData
from retrlab.pool import CandidatePool

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


def toy_pool(data: RetrievalData) -> CandidatePool:
    """Every train passage except the labelled positive, all scored 0, as each train query's pool."""
    qids = data.qids("train")
    pids = [[p for p in data.search_pids("train") if p not in data.positives[q]] for q in qids]
    hidden = [np.array([p in data.qrels[q] for p in row]) for q, row in zip(qids, pids)]
    return CandidatePool("toy", qids, pids, [np.zeros(len(r), np.float32) for r in pids], hidden,
                         np.zeros(len(qids), np.float32), np.ones(len(qids), int))
