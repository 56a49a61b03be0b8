"""PROP / B-PROP rules on hand-made numbers: smoothing, set scoring, pair order, the loss."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from retrlab.pretraining.prop import (CollectionLM, bprop_distribution, bprop_pair,
                                      contrastive_weights, dirichlet_probability, document_lm,
                                      order_pair, prop_pair, random_term_distribution, rop_loss,
                                      sample_length, sample_word_set, set_log_likelihood, set_weight,
                                      words)

DOCS = [["cat", "cat", "dog"], ["dog", "fish", "fish", "fish", "bird"]]


def test_words_drops_stopwords_and_single_letters():
    assert words("The Cat and a dog, in 2 boxes!") == ["cat", "dog", "boxes"]


def test_collection_lm_and_dirichlet_smoothing_exact():
    c = CollectionLM.from_documents(DOCS)
    assert c.mu == 4.0  # 8 words / 2 documents
    assert c.probs == {"cat": 2 / 8, "dog": 2 / 8, "fish": 3 / 8, "bird": 1 / 8}
    # P(cat|d0) = (2 + 4 * 2/8) / (3 + 4) = 3/7 ; P(fish|d0) = (0 + 4 * 3/8) / 7 = 1.5/7
    lm = document_lm(DOCS[0], c, ["cat", "fish"])
    assert lm == pytest.approx({"cat": 3 / 7, "fish": 1.5 / 7})
    assert dirichlet_probability(0, 0, 0.5, 10.0) == 0.5  # an empty document falls back to P(w|C)
    # over the whole collection vocabulary, P(.|d) sums to one
    assert sum(document_lm(DOCS[1], c, list(c.probs)).values()) == pytest.approx(1.0)


def test_set_scoring_and_pair_order():
    lm = {"cat": 0.5, "dog": 0.25, "fish": 0.125}
    assert set_log_likelihood(["cat", "dog"], lm) == pytest.approx(math.log(0.125))
    assert order_pair(["fish"], ["cat"], math.log(0.125), math.log(0.5)) == (["cat"], ["fish"])
    assert order_pair(["a"], ["b"], 1.0, 1.0) == (["a"], ["b"])  # ties keep the first
    assert set_weight(["x", "y"], {"x": 1.5, "y": 2.0, "z": 9.0}) == 3.5


def test_poisson_length_never_zero_and_sets_are_distinct_words():
    rng = np.random.default_rng(0)
    lengths = [sample_length(rng) for _ in range(5000)]
    assert min(lengths) >= 1
    # E[k | k > 0] for Poisson(3) = 3 / (1 - e^-3) = 3.157
    assert abs(np.mean(lengths) - 3 / (1 - math.exp(-3))) < 0.06
    s = sample_word_set(["a", "b", "c"], np.array([0.5, 0.5, 0.0]), rng)
    assert len(s) == len(set(s)) and set(s) <= {"a", "b"}


def test_prop_pair_positive_has_higher_likelihood_and_is_seeded():
    c = CollectionLM.from_documents(DOCS)
    a = prop_pair(DOCS[1], c, np.random.default_rng(3), n_corpus_words=2)
    b = prop_pair(DOCS[1], c, np.random.default_rng(3), n_corpus_words=2)
    assert a == b
    positive, negative, lp, ln = a
    lm = document_lm(DOCS[1], c, list(c.probs))
    assert lp == pytest.approx(set_log_likelihood(positive, lm)) and lp >= ln
    assert ln == pytest.approx(set_log_likelihood(negative, lm))


def test_bprop_weights_exact():
    d1, d2 = {"cat": 0.75, "dog": 0.25}, {"dog": 0.5, "fish": 0.5}
    rand = random_term_distribution([d1, d2])
    assert rand == {"cat": 0.375, "dog": 0.375, "fish": 0.25}
    w = contrastive_weights(d2, rand)
    assert w == pytest.approx({"dog": 0.5 * -math.log2(0.375), "fish": 0.5 * 2.0})
    assert contrastive_weights({"x": 1.0}, {"x": 2.0 ** -200})["x"] == 100.0  # capped
    vocab, probs = bprop_distribution({"a": 0.0, "b": math.log(3.0)})
    assert vocab == ["a", "b"] and probs == pytest.approx([0.25, 0.75])
    positive, negative, wp, wn = bprop_pair(w, np.random.default_rng(0))
    assert wp == pytest.approx(set_weight(positive, w)) and wp >= wn


def test_rop_loss_exact():
    pos, neg = torch.tensor([2.0, 0.0]), torch.tensor([0.0, 0.0])
    # p_pos = sigmoid(2) for the first pair, 0.5 for the second; loss = mean(1 - (p_pos - p_neg))
    p = torch.sigmoid(torch.tensor(2.0)).item()
    expected = ((1 - (p - (1 - p))) + 1.0) / 2
    assert rop_loss(pos, neg).item() == pytest.approx(expected)


def test_pretrain_rop_and_attention_terms_on_a_tiny_model(toy_data, one_thread):
    from retrlab.pretraining.bench import PretrainConfig, TinyConfig, corpus_texts, train_wordpiece
    from retrlab.pretraining.prop import cls_attention_terms, pretrain_rop, reranker_from

    tiny = TinyConfig(vocab_size=200, layers=1, hidden=16, heads=2)
    texts = corpus_texts(toy_data)
    tok = train_wordpiece(texts, 200)
    docs = [words(t) for t in texts]
    collection = CollectionLM.from_documents(docs)

    def sampler(row, generator):
        return prop_pair(docs[row], collection, generator, n_corpus_words=3)

    config = PretrainConfig(steps=3, batch_size=4, mlm_weight=1.0)
    checkpoint = pretrain_rop(tok, texts, sampler, config, tiny, max_length=48, progress=False)
    again = pretrain_rop(tok, texts, sampler, config, tiny, max_length=48, progress=False)
    assert [r["rop"] for r in checkpoint.history.rows] == [r["rop"] for r in again.history.rows]
    assert set(checkpoint.state) == {"head.weight", "head.bias"}
    reranker = reranker_from(checkpoint, tok, 48)
    assert torch.equal(reranker.head.weight, checkpoint.state["head.weight"])
    assert reranker.encoder is checkpoint.mlm.bert
    dist = cls_attention_terms(checkpoint.mlm, tok, "Cats sleep; cats dream of the mice.")
    assert set(dist) == {"cats", "sleep", "dream", "mice"} and sum(dist.values()) == pytest.approx(1.0)
