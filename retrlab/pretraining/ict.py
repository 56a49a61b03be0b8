"""ICT — the Inverse Cloze Task (Lee, Chang & Toutanova, ACL 2019, "Latent Retrieval for Weakly
Supervised Open Domain Question Answering"; official code: google-research/language
``language/orqa/datasets/ict_dataset.py`` and ``language/orqa/models/ict_model.py``).

A passage is a bag of sentences; one sentence, drawn uniformly, becomes a pseudo-query, and the
passage is its positive. With probability ``mask_rate`` = 0.9 the sentence is *removed* from the
passage, so the model must match it by topic and context rather than by copied words; the other 10%
of the time it stays, so lexical matching is learnt too. Loss: in-batch softmax over ``q · bᵀ``.

Deviations (scale): passages are wiki-car's ~100-word chunks (ORQA: 288-wordpiece blocks), the
context keeps ORQA's "title [SEP] block" as "Title: block" (the bench's passage format), cosine
scores with τ = 0.05 instead of raw dot products of a 128-d projection, and batch 32 instead of 4096.
A passage with a single sentence cannot lose it and still be a context: such passages are left out
(ORQA drops them when masked).
"""
from __future__ import annotations

import random

from retrlab.data.dataset import RetrievalData
from retrlab.data.wikicar import split_sentences
from retrlab.pretraining.bench import PairTask

MASK_RATE = 0.9  # ORQA's ``mask_rate``


def passage_sentences(text: str) -> list[str]:
    """A passage's sentences (wiki-car's sentence splitter)."""
    return split_sentences([text])


def ict_pair(sentences: list[str], title: str, rng: random.Random,
             mask_rate: float = MASK_RATE) -> tuple[str, str, bool]:
    """One ICT example: (pseudo-query, context, removed?) from a passage's ``sentences``.

    The query is a uniformly drawn sentence; with probability ``mask_rate`` it is cut from the
    context, otherwise the context is the whole passage.
    """
    if len(sentences) < 2:
        raise ValueError("ICT needs a passage of at least two sentences")
    if not 0 <= mask_rate <= 1:
        raise ValueError(f"mask_rate must be in [0, 1], got {mask_rate}")
    i = rng.randrange(len(sentences))
    removed = rng.random() < mask_rate
    kept = sentences[:i] + sentences[i + 1:] if removed else sentences
    context = " ".join(kept)
    return sentences[i], f"{title}: {context}" if title else context, removed


def ict_passages(data: RetrievalData) -> list[tuple[str, list[str]]]:
    """(title, sentences) of every passage with at least two sentences, in corpus order."""
    out = []
    for doc in data.corpus.values():
        sentences = passage_sentences(doc["text"])
        if len(sentences) >= 2:
            out.append((doc.get("title", ""), sentences))
    return out


def ict_task(data: RetrievalData, mask_rate: float = MASK_RATE) -> PairTask:
    """A pair task for ``bench.pretrain``: ``batch_size`` ICT pairs from distinct passages."""
    passages = ict_passages(data)

    def task(rng: random.Random, batch_size: int) -> tuple[list[str], list[str]]:
        if batch_size > len(passages):
            raise ValueError(f"batch_size {batch_size} exceeds the {len(passages)} ICT passages")
        pairs = [ict_pair(s, t, rng, mask_rate) for t, s in rng.sample(passages, batch_size)]
        return [q for q, _, _ in pairs], [c for _, c, _ in pairs]

    return task
