"""PROP and B-PROP — pretraining a re-ranker to predict a document's representative words.

* PROP: Ma, Guo, Zhang, Fan, Ji & Cheng, WSDM 2021, "PROP: Pre-training with Representative Words
  Prediction for Ad-hoc Retrieval"; official code Albert-Ma/PROP
  ``prop/multiprocessing_generate_word_sets.py`` (word sets), ``prop/multiprocessing_generate_
  pairwise_instances.py`` (pairs) and ``pytorch_pretrain_bert/modeling.py: PROP`` (loss).
* B-PROP: Ma et al., SIGIR 2021, "B-PROP: Bootstrapped Pre-training with Representative Words
  Prediction"; ``bprop/transform_vanilla_attention_to_term_distribution.py`` and
  ``bprop/multiprocessing_generate_word_sets.py``.

The task (ROP): a query is a "representative word set" of its document. PROP builds a document
language model with Dirichlet smoothing, ``P(w|d) = (tf(w,d) + μ·P(w|C)) / (|d| + μ)`` with μ the
average document length, samples two word sets from it (length ~ Poisson(λ=3), resampled if 0) and
calls the set with the higher query likelihood ``Σ log P(w|d)`` the positive. A cross-encoder scores
``[CLS] set [SEP] doc [SEP]``; loss = margin ranking (margin 1) on the pair's softmax-normalised
scores + MLM. B-PROP swaps the unigram LM for BERT's own view: the [CLS] token's last-layer attention
gives a term distribution ``p_d``, the corpus average gives a "random" one ``p_rand``, and the
divergence-from-randomness weight ``p_d(w)·(-log2 p_rand(w))`` (capped at 100), softmaxed, is the
sampling distribution; sets are scored by the sum of their weights.

Deviations (scale): words are lower-cased alphabetic tokens without stopwords (bm25s' English list);
the sampling vocabulary is the document's words plus ``n_corpus_words`` drawn from P(w|C) (the
code's "doc words + sampled corpus words"); no keep-probability filter and no skipping of short
documents (wiki-car passages are all ~100 words); one pair per document per step; B-PROP's attention
comes from the bench's MLM-pretrained tiny BERT, not BERT-base.
"""
from __future__ import annotations

import math
import random
import re
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, replace

import numpy as np
import torch
import torch.nn.functional as F
from bm25s.stopwords import STOPWORDS_EN
from transformers import BertForMaskedLM, DataCollatorForLanguageModeling

from retrlab.artifacts import Checkpoint
from retrlab.pretraining.bench import PretrainConfig, TinyConfig, TinyCrossEncoder, new_mlm, pretrain

WORD = re.compile(r"[a-z]+")
STOPWORDS = frozenset(STOPWORDS_EN)
POISSON_LAMBDA = 3.0  # mean word-set length, like a short query
DFR_CAP = 100.0  # B-PROP caps the contrastive weight


def words(text: str) -> list[str]:
    """Lower-cased alphabetic words of ``text``, stopwords and single letters removed."""
    return [w for w in WORD.findall(text.lower()) if len(w) > 1 and w not in STOPWORDS]


# --- PROP: the document language model ----------------------------------------------------------
@dataclass
class CollectionLM:
    """P(w|C) over a corpus, and μ = the average document length (PROP's Dirichlet prior)."""
    probs: dict[str, float]
    mu: float

    @classmethod
    def from_documents(cls, documents: list[list[str]]) -> CollectionLM:
        counts = Counter(w for doc in documents for w in doc)
        total = sum(counts.values())
        if not total:
            raise ValueError("the collection has no words")
        return cls({w: c / total for w, c in counts.items()}, total / len(documents))


def dirichlet_probability(tf: int, doc_length: int, collection_prob: float, mu: float) -> float:
    """``P(w|d) = (tf(w,d) + μ·P(w|C)) / (|d| + μ)``."""
    return (tf + mu * collection_prob) / (doc_length + mu)


def document_lm(doc: list[str], collection: CollectionLM, vocab: list[str]) -> dict[str, float]:
    """Dirichlet-smoothed P(w|d) for the words of ``vocab`` (each must be in the collection)."""
    tf, n = Counter(doc), len(doc)
    return {w: dirichlet_probability(tf[w], n, collection.probs[w], collection.mu) for w in vocab}


def sampling_vocabulary(doc: list[str], collection: CollectionLM, rng: np.random.Generator,
                        n_corpus_words: int = 20) -> list[str]:
    """The words a set is drawn from: the document's, plus ``n_corpus_words`` drawn by P(w|C)."""
    corpus_words = list(collection.probs)
    corpus_p = np.fromiter(collection.probs.values(), dtype=float, count=len(corpus_words))
    extra = rng.choice(len(corpus_words), size=n_corpus_words, replace=False, p=corpus_p / corpus_p.sum())
    return list(dict.fromkeys(doc + [corpus_words[i] for i in sorted(extra)]))


def sample_length(rng: np.random.Generator, lam: float = POISSON_LAMBDA) -> int:
    """A word-set length ~ Poisson(λ), resampled while it is 0."""
    while (k := int(rng.poisson(lam))) == 0:
        pass
    return k


def sample_word_set(vocab: list[str], probs: np.ndarray, rng: np.random.Generator,
                    lam: float = POISSON_LAMBDA) -> list[str]:
    """Distinct words drawn from ``probs`` (without replacement), length ~ Poisson(λ)."""
    k = min(sample_length(rng, lam), int((probs > 0).sum()))
    return [vocab[i] for i in rng.choice(len(vocab), size=k, replace=False, p=probs)]


def set_log_likelihood(word_set: list[str], lm: dict[str, float]) -> float:
    """Query likelihood of a word set: ``Σ_w log P(w|d)``."""
    return sum(math.log(lm[w]) for w in word_set)


def order_pair(set_a: list[str], set_b: list[str], score_a: float,
               score_b: float) -> tuple[list[str], list[str]]:
    """(positive, negative): the set with the higher score first (ties keep ``set_a`` first)."""
    return (set_a, set_b) if score_a >= score_b else (set_b, set_a)


def prop_pair(doc: list[str], collection: CollectionLM, rng: np.random.Generator,
              n_corpus_words: int = 20) -> tuple[list[str], list[str], float, float]:
    """PROP's training pair for one document: (positive set, negative set, their log-likelihoods)."""
    vocab = sampling_vocabulary(doc, collection, rng, n_corpus_words)
    lm = document_lm(doc, collection, vocab)
    probs = np.array([lm[w] for w in vocab])
    probs /= probs.sum()
    a, b = sample_word_set(vocab, probs, rng), sample_word_set(vocab, probs, rng)
    la, lb = set_log_likelihood(a, lm), set_log_likelihood(b, lm)
    positive, negative = order_pair(a, b, la, lb)
    return positive, negative, max(la, lb), min(la, lb)


# --- B-PROP: term distributions from [CLS] attention --------------------------------------------
@torch.inference_mode()
def cls_attention_terms(mlm: BertForMaskedLM, tokenizer, text: str,
                        max_length: int = 128) -> dict[str, float]:
    """A document's term distribution from its [CLS] token's last-layer attention.

    Attention (averaged over heads) from [CLS] to each wordpiece is summed per word, saturated with
    ``v / (v + 0.01)`` (as B-PROP's transform script) and normalised over the kept ``words``.
    """
    encoded = tokenizer(text, truncation=True, max_length=max_length, return_tensors="pt",
                        return_offsets_mapping=True)
    encoded.pop("offset_mapping")  # asked for by word_ids(); the model takes no offsets
    attention = mlm.bert(**encoded.to(mlm.device), output_attentions=True).attentions[-1]
    from_cls = attention[0].mean(0)[0].cpu()  # (T,) last layer, heads averaged, row of [CLS]
    per_word: Counter[str] = Counter()
    for position, word_id in enumerate(encoded.word_ids(0)):
        if word_id is None:
            continue  # [CLS] / [SEP]
        start, end = encoded.word_to_chars(0, word_id)
        per_word[text[start:end].lower()] += float(from_cls[position])
    kept = {w: v / (v + 0.01) for w, v in per_word.items() if words(w) == [w]}
    total = sum(kept.values())
    return {w: v / total for w, v in kept.items()} if total else {}


def random_term_distribution(distributions: list[dict[str, float]]) -> dict[str, float]:
    """B-PROP's "random" distribution: the average of the documents' term distributions."""
    total: Counter[str] = Counter()
    for dist in distributions:
        total.update(dist)
    return {w: v / len(distributions) for w, v in total.items()}


def contrastive_weights(doc_dist: dict[str, float], random_dist: dict[str, float],
                        cap: float = DFR_CAP) -> dict[str, float]:
    """Divergence from randomness: ``min(p_d(w)·(-log2 p_rand(w)), cap)`` for each word of d."""
    return {w: min(p * -math.log2(random_dist[w]), cap) for w, p in doc_dist.items()}


def bprop_distribution(weights: dict[str, float], temperature: float = 1.0) -> tuple[list[str], np.ndarray]:
    """Softmax(weights / T) over a document's words: B-PROP's sampling distribution."""
    vocab = list(weights)
    logits = torch.tensor([weights[w] for w in vocab], dtype=torch.float64) / temperature
    return vocab, torch.softmax(logits, 0).numpy()


def set_weight(word_set: list[str], weights: dict[str, float]) -> float:
    """B-PROP's score of a word set: the sum of its words' contrastive weights."""
    return sum(weights[w] for w in word_set)


def bprop_pair(weights: dict[str, float], rng: np.random.Generator,
               temperature: float = 1.0) -> tuple[list[str], list[str], float, float]:
    """B-PROP's training pair for one document: (positive set, negative set, their weights)."""
    vocab, probs = bprop_distribution(weights, temperature)
    a, b = sample_word_set(vocab, probs, rng), sample_word_set(vocab, probs, rng)
    wa, wb = set_weight(a, weights), set_weight(b, weights)
    positive, negative = order_pair(a, b, wa, wb)
    return positive, negative, max(wa, wb), min(wa, wb)


# --- the pretraining loss -------------------------------------------------------------------------
def rop_loss(positive_scores: torch.Tensor, negative_scores: torch.Tensor,
             margin: float = 1.0) -> torch.Tensor:
    """PROP's loss on (B,) pair scores: softmax over each (pos, neg) pair, then
    ``MarginRankingLoss(margin)(p_pos, p_neg, 1) = mean(max(0, margin - (p_pos - p_neg)))``."""
    probs = torch.softmax(torch.stack([positive_scores, negative_scores], 1), 1)  # (B, 2)
    return F.margin_ranking_loss(probs[:, 0], probs[:, 1], torch.ones_like(probs[:, 0]), margin=margin)


def rop_step_loss(mlm: BertForMaskedLM, reranker: TinyCrossEncoder, documents: list[str],
                  positives: list[list[str]], negatives: list[list[str]],
                  mlm_weight: float = 1.0) -> tuple[torch.Tensor, dict[str, float]]:
    """ROP + MLM on one batch: (set, doc) pairs are masked once, one forward gives both the [CLS]
    score (ROP) and the MLM logits, as PROP's model does. ``reranker.encoder`` is ``mlm.bert``."""
    sets = [" ".join(s) for s in positives + negatives]
    pairs = reranker.tokenizer(sets, documents + documents, truncation="only_second",
                               max_length=reranker.max_length)
    collator = DataCollatorForLanguageModeling(reranker.tokenizer, mlm_probability=0.15)
    batch = collator([{"input_ids": i, "token_type_ids": t}
                      for i, t in zip(pairs["input_ids"], pairs["token_type_ids"])])
    batch = {k: v.to(mlm.device) for k, v in batch.items()}
    labels = batch.pop("labels")
    hidden = mlm.bert(**batch).last_hidden_state  # (2B, T, H)
    scores = reranker.score_hidden(hidden)  # (2B,)
    rop = rop_loss(scores[:len(documents)], scores[len(documents):])
    logits = mlm.cls(hidden)  # (2B, T, V)
    masked = F.cross_entropy(logits.view(-1, logits.shape[-1]), labels.view(-1), ignore_index=-100)
    return rop + mlm_weight * masked, {"rop": rop.item(), "mlm": masked.item()}


# (document row, generator) -> (positive set, negative set, positive score, negative score)
PairSampler = Callable[[int, np.random.Generator], tuple[list[str], list[str], float, float]]


def pretrain_rop(tokenizer, documents: list[str], sampler: PairSampler, config: PretrainConfig,
                 tiny: TinyConfig = TinyConfig(), max_length: int = 80,
                 progress: bool = True) -> Checkpoint:
    """PROP/B-PROP pretraining of a fresh tiny cross-encoder: each step ``config.batch_size``
    documents, one word-set pair each from ``sampler``, ROP + ``config.mlm_weight`` × MLM.
    The checkpoint's ``state`` holds the scoring head (``reranker_from`` rebuilds the re-ranker)."""
    mlm = new_mlm(tokenizer, tiny, config.seed)
    reranker = TinyCrossEncoder(mlm.bert, tokenizer, max_length)
    generator = np.random.default_rng(config.seed)

    def loss_fn(model: BertForMaskedLM, rng: random.Random):
        rows = rng.sample(range(len(documents)), config.batch_size)
        pairs = [sampler(row, generator) for row in rows]
        return rop_step_loss(model, reranker, [documents[r] for r in rows], [p[0] for p in pairs],
                             [p[1] for p in pairs], config.mlm_weight)

    history = pretrain(mlm, tokenizer, documents, replace(config, mlm_weight=0.0), loss_fn=loss_fn,
                       tiny=tiny, progress=progress, extra=reranker.head)
    return Checkpoint(mlm, history, {f"head.{k}": v for k, v in reranker.head.state_dict().items()})


def reranker_from(checkpoint: Checkpoint, tokenizer, max_length: int = 80) -> TinyCrossEncoder:
    """The cross-encoder of a checkpoint: its encoder, and its trained head when it has one
    (a bi-encoder method's checkpoint gets a freshly initialised head)."""
    reranker = TinyCrossEncoder(checkpoint.mlm.bert, tokenizer, max_length)
    head = {k.removeprefix("head."): v for k, v in checkpoint.state.items() if k.startswith("head.")}
    if head:
        reranker.head.load_state_dict(head)
    return reranker
