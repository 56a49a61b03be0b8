"""SEED-Encoder — a strong encoder pretrained with a deliberately weak decoder.

Lu, Xiong, He, Jiao, Tsai, Liu & Jiang, EMNLP 2021, "Less is More: Pre-train a Strong Text Encoder
for Dense Retrieval Using a Weak Decoder"; official code microsoft/SEED-Encoder
``model/SEED_Encoder/modeling_seed_encoder.py`` (``SEEDEncoderModel.forward``) and
``model/SEED_Encoder/transformer_sentence_encoder.py`` (``TransformerDecoder.buffered_future_mask``),
configs ``config_decoder_3_attn_2.json`` / ``config_decoder_1_attn_8.json``.

The argument: an auto-encoder whose decoder is a strong language model can reconstruct a text from
its own left context and ignore the encoder (the "bypass" effect), so the encoder's vector learns
little. SEED makes the decoder weak in two ways, so that reconstruction has to go through the
encoder's [CLS] vector:

* it reads the encoder **only through [CLS]**: cross-attention memory = ``h[:, 0:1]``, one vector;
* its causal self-attention sees only a **window** of the ``k`` most recent tokens (``k = 2`` for the
  3-layer decoder, 8 for the 1-layer one), plus position 0 which is always visible.

Loss = encoder MLM (15%, predicted at the masked positions only, like fairseq's ``masked_tokens``)
and decoder LM (next token, teacher forcing), mixed ``train_ratio "0.5:0.5"``. After pretraining the
decoder is dropped and the encoder's [CLS] is the text vector (retrieval uses CLS pooling).

Deviations (scale): a 2-layer, 128-wide BERT from scratch instead of a 12-layer RoBERTa-size model,
and by default a 1-layer decoder with window 2 (the official decoders pair 3 layers with window 2,
or 1 layer with window 8; ours must stay smaller than a 2-layer encoder). The decoder shares the
encoder's BERT embeddings (word + position) and MLM head (the official one shares the token
embeddings and has its own learned positions). Its layers are PyTorch's post-LN
``nn.TransformerDecoderLayer`` (self-attention, cross-attention, feed-forward, as fairseq's) with
PyTorch's Xavier-style initialisation, fairseq's default for these layers, rather than the N(0, 0.02)
of the HF port: the path from [CLS] is a product of two projections, and at width 128 N(0, 0.02)
would start it about 8x weaker than at width 768. ``window=None`` gives the plain causal decoder:
the "strong" one for comparison.
"""
from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass, replace

import torch
import torch.nn.functional as F
from torch import nn
from transformers import BertForMaskedLM, DataCollatorForLanguageModeling

from retrlab.artifacts import Checkpoint, cached_pretraining
from retrlab.pretraining.bench import PretrainConfig, TinyConfig, new_mlm, pretrain, restore_module

TINY_CLS = TinyConfig(pooling="cls")  # these methods train [CLS]: retrieval reads it
# The cached builders' default budget per step (SEED and RetroMAE): half the bench's batch at twice
# its lr — with under a hundred steps, more and smaller steps lowered the MLM loss faster in our runs
PRETRAIN_BATCH = 16
PRETRAIN_LR = 1e-3


# --- the rule: a windowed causal mask --------------------------------------------------------------
def window_causal_mask(length: int, window: int | None) -> torch.Tensor:
    """(L, L) bool, True where decoder position i may attend to position j: the ``window`` most
    recent positions ``i - window < j <= i``, and position 0 always. ``window=None``: all ``j <= i``.

    Equals SEED's ``buffered_future_mask``: ``triu(-inf, 1) + triu(-inf, k).T`` with column 0 reset.
    """
    if length < 1:
        raise ValueError(f"length must be >= 1, got {length}")
    if window is not None and window < 1:
        raise ValueError(f"window must be >= 1 (or None for full causal attention), got {window}")
    i = torch.arange(length).unsqueeze(1)  # (L, 1) query positions
    j = torch.arange(length).unsqueeze(0)  # (1, L) key positions
    visible = j <= i
    if window is not None:
        visible &= (i - j) < window
    visible[:, 0] = True
    return visible


def shift_for_lm(input_ids: torch.Tensor, attention_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Teacher forcing: decoder inputs ``x_0 .. x_{T-2}`` ([CLS] first) and labels ``x_1 .. x_{T-1}``
    (padding -> -100). (B, T) -> (B, T-1), (B, T-1)."""
    if input_ids.shape != attention_mask.shape or input_ids.dim() != 2 or input_ids.shape[1] < 2:
        raise ValueError(f"need (B, T >= 2) ids and mask of one shape, got {tuple(input_ids.shape)} "
                         f"and {tuple(attention_mask.shape)}")
    labels = input_ids[:, 1:].masked_fill(attention_mask[:, 1:] == 0, -100)
    return input_ids[:, :-1], labels


# --- the model pieces ---------------------------------------------------------------------------
class SeedDecoder(nn.Module):
    """An autoregressive Transformer decoder that reads the encoder only through its [CLS] vector,
    with causal self-attention restricted to ``window`` recent tokens (``None``: unrestricted)."""

    def __init__(self, hidden: int, heads: int, layers: int, window: int | None, dropout: float = 0.1):
        super().__init__()
        if layers < 1:
            raise ValueError(f"the decoder needs at least one layer, got {layers}")
        self.window = window
        # independent layers (nn.TransformerDecoder would deep-copy one); PyTorch's init (see above)
        self.layers = nn.ModuleList(
            nn.TransformerDecoderLayer(hidden, heads, 4 * hidden, dropout, activation="gelu",
                                       batch_first=True)
            for _ in range(layers))

    def forward(self, cls: torch.Tensor, states: torch.Tensor, padding: torch.Tensor) -> torch.Tensor:
        """cls (B, H) encoder [CLS]; states (B, T, H) embedded decoder inputs; padding (B, T) True at
        padding -> (B, T, H). The memory is the single [CLS] vector: nothing else of the encoder."""
        if cls.dim() != 2 or states.dim() != 3 or cls.shape[0] != states.shape[0]:
            raise ValueError(f"need cls (B, H) and states (B, T, H), got {tuple(cls.shape)}, "
                             f"{tuple(states.shape)}")
        blocked = ~window_causal_mask(states.shape[1], self.window).to(states.device)  # torch: True = blocked
        memory = cls.unsqueeze(1)  # (B, 1, H)
        for layer in self.layers:
            states = layer(states, memory, tgt_mask=blocked, tgt_key_padding_mask=padding)
        return states


def lm_head_loss(mlm: BertForMaskedLM, states: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Cross-entropy of the shared MLM head's predictions at the labelled positions only
    (labels != -100): the full vocabulary projection is the expensive part, so skip the rest."""
    keep = labels != -100
    if not keep.any():
        raise ValueError("no labelled position in the batch")
    return F.cross_entropy(mlm.cls(states[keep]), labels[keep])


def decoder_lm_loss(mlm: BertForMaskedLM, decoder: SeedDecoder, cls: torch.Tensor, input_ids: torch.Tensor,
                    attention_mask: torch.Tensor) -> torch.Tensor:
    """SEED's decoder loss: predict each next token of the (unmasked) text from [CLS] + the window."""
    decoder_ids, labels = shift_for_lm(input_ids, attention_mask)
    states = mlm.bert.embeddings(input_ids=decoder_ids)  # (B, T-1, H), embeddings shared with the encoder
    out = decoder(cls, states, padding=attention_mask[:, :-1] == 0)
    return lm_head_loss(mlm, out, labels)


# --- one training step ----------------------------------------------------------------------------
@dataclass(frozen=True)
class SeedConfig:
    decoder_layers: int = 1  # the official decoders: 3 layers with window 2, or 1 layer with window 8
    window: int | None = 2  # tokens each decoder position sees (itself included); None = full causal
    mlm_probability: float = 0.15
    lm_weight: float = 0.5  # train_ratio "0.5:0.5": (1 - w) * MLM + w * LM

    def key(self) -> str:
        return f"seed-l{self.decoder_layers}-w{self.window or 'full'}"


def seed_step_loss(mlm: BertForMaskedLM, decoder: SeedDecoder, tokenizer, texts: list[str],
                   config: SeedConfig, max_length: int) -> tuple[torch.Tensor, dict[str, float]]:
    """One SEED step: the encoder reads the masked texts (MLM loss); the decoder rebuilds the
    unmasked texts left to right from the encoder's [CLS] (LM loss)."""
    encoded = tokenizer(texts, truncation=True, max_length=max_length)
    original = tokenizer.pad({"input_ids": encoded["input_ids"]}, return_tensors="pt")
    masked = DataCollatorForLanguageModeling(tokenizer, mlm_probability=config.mlm_probability)(
        [{"input_ids": ids} for ids in encoded["input_ids"]])  # BERT's 80/10/10 on 15% of tokens
    device = mlm.device
    ids, attention = original["input_ids"].to(device), original["attention_mask"].to(device)
    hidden = mlm.bert(input_ids=masked["input_ids"].to(device), attention_mask=attention).last_hidden_state
    mlm_part = lm_head_loss(mlm, hidden, masked["labels"].to(device))
    lm_part = decoder_lm_loss(mlm, decoder, hidden[:, 0], ids, attention)
    loss = (1 - config.lm_weight) * mlm_part + config.lm_weight * lm_part
    return loss, {"mlm": mlm_part.item(), "decoder": lm_part.item()}


def new_decoder(config: SeedConfig, tiny: TinyConfig = TINY_CLS) -> SeedDecoder:
    return SeedDecoder(tiny.hidden, tiny.heads, config.decoder_layers, config.window)


def pretrain_seed(tokenizer, texts: list[str], pretrain_config: PretrainConfig,
                  config: SeedConfig = SeedConfig(), tiny: TinyConfig = TINY_CLS,
                  progress: bool = True) -> Checkpoint:
    """A fresh tiny BERT + SEED decoder trained ``pretrain_config.steps`` steps on random ``texts``;
    the checkpoint's ``state`` holds the decoder (``decoder_from`` rebuilds it)."""
    mlm = new_mlm(tokenizer, tiny, pretrain_config.seed)
    decoder = new_decoder(config, tiny)  # right after new_mlm's manual_seed: seeded too

    def loss_fn(model: BertForMaskedLM, rng):
        sample = rng.sample(texts, pretrain_config.batch_size)
        return seed_step_loss(model, decoder, tokenizer, sample, config, tiny.passage_max_length)

    history = pretrain(mlm, tokenizer, texts, replace(pretrain_config, mlm_weight=0.0), loss_fn=loss_fn,
                       tiny=tiny, progress=progress, extra=decoder)
    return Checkpoint(mlm, history, {f"decoder.{k}": v for k, v in decoder.state_dict().items()})


def decoder_from(checkpoint: Checkpoint, config: SeedConfig = SeedConfig(),
                 tiny: TinyConfig = TINY_CLS) -> SeedDecoder:
    """The trained decoder of a SEED checkpoint (in eval mode)."""
    return restore_module(new_decoder(config, tiny), checkpoint, "decoder.", "SEED")


def cached_encoder_decoder(pretrain_fn: Callable, tokenizer, texts: list[str], steps: int, seed: int = 0,
                           smoke: bool = False, *, config, tiny: TinyConfig = TINY_CLS,
                           batch_size: int = PRETRAIN_BATCH, lr: float = PRETRAIN_LR,
                           progress: bool = True) -> Checkpoint:
    """An encoder-decoder objective's checkpoint (SEED, RetroMAE) for this budget, decoder ``config``
    and seed: loaded from the cache or trained once with ``pretrain_fn(tokenizer, texts, pretrain_config,
    config, tiny, progress)``."""
    pretrain_config = PretrainConfig(steps=steps, batch_size=batch_size, lr=lr, seed=seed)
    return cached_pretraining(
        f"{config.key()}-b{batch_size}-lr{lr:g}",
        lambda: pretrain_fn(tokenizer, texts, pretrain_config, config, tiny, progress),
        steps, seed, tokenizer, tiny, smoke)


# the SEED checkpoint: cached_seed(tokenizer, texts, steps, seed, smoke, config=SeedConfig(...), ...)
cached_seed = functools.partial(cached_encoder_decoder, pretrain_seed, config=SeedConfig())


# --- how much does the decoder use [CLS]? -------------------------------------------------------
@torch.inference_mode()
def reconstruction_loss(mlm: BertForMaskedLM, decoder: SeedDecoder, tokenizer, texts: list[str],
                        max_length: int, shuffle_cls: bool = False, batch_size: int = 64) -> float:
    """Decoder LM loss per token on ``texts`` (encoder reads them unmasked). ``shuffle_cls`` hands
    each text the [CLS] of the next text in its batch: the loss increase is what [CLS] carries."""
    was = mlm.training, decoder.training
    mlm.eval()
    decoder.eval()
    total, count = 0.0, 0
    for start in range(0, len(texts), batch_size):
        batch = tokenizer(texts[start:start + batch_size], truncation=True, max_length=max_length,
                          padding=True, return_tensors="pt").to(mlm.device)
        cls = mlm.bert(**batch).last_hidden_state[:, 0]  # (B, H)
        if shuffle_cls:
            cls = cls.roll(1, dims=0)
        tokens = int(batch["attention_mask"][:, 1:].sum())
        loss = decoder_lm_loss(mlm, decoder, cls, batch["input_ids"], batch["attention_mask"])
        total, count = total + loss.item() * tokens, count + tokens
    mlm.train(was[0])
    decoder.train(was[1])
    return total / count
