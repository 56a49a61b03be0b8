"""RetroMAE — masked auto-encoding with an asymmetric masking and a one-layer "enhanced" decoder.

Xiao, Liu, Shao & Cao, EMNLP 2022, "RetroMAE: Pre-Training Retrieval-oriented Language Models Via
Masked Auto-Encoder"; official code staoxiao/RetroMAE ``src/pretrain/modeling.py``
(``RetroMAEForPretraining.forward``), ``src/pretrain/data.py`` (``RetroMAECollator``) and
``src/pretrain/enhancedDecoder.py`` (``BertLayerForDecoder``); also in FlagOpen/FlagEmbedding.

* **Encoder**: BERT reads the text with **30%** of it whole-word-masked (BERT's 80/10/10) and keeps
  its MLM loss; the sentence vector is the last layer's [CLS], ``h_X``.
* **Decoder**: **one** Transformer layer, two streams over the *unmasked* text:
  query ``H1_i = h_X + p_i`` (the [CLS] vector plus position i: it knows *where*, not *what*) and
  content ``H2 = [h_X; e(x_1) + p_1; ...; e(x_N) + p_N]`` (BERT embeddings, [CLS] replaced by h_X).
  Attention ``softmax(H1 W_Q (H2 W_K)^T / sqrt(d) + M) H2 W_V`` with a **position-specific mask**
  M: row i sees a random whole-word subset of the text drawn at **50%** masking (one of a pool of
  ``min(L, 256)`` masks, per row), never itself, and always [CLS] (never a masking candidate).
* The decoder reconstructs **all** tokens (labels = the input except [CLS] and the final [SEP]).
  Loss = encoder MLM + decoder reconstruction, head shared with the encoder.

Because each row has to rebuild its token from a different half of the text plus h_X, the decoder
cannot copy and cannot run a language model over a fixed context: h_X has to carry the text.

Deviations (scale): a 2-layer, 128-wide BERT from scratch (the paper starts from BERT-base's size on
Wikipedia + BookCorpus); the MLM and reconstruction heads compute logits at the labelled positions
only (the same loss, less work). ``decoder_layers > 1`` stacks layers on the query stream with the
content stream fixed (our extension, for the strong-decoder comparison; the official decoder has
one layer).
"""
from __future__ import annotations

import functools
import math
import random
from dataclasses import dataclass, replace

import torch
from torch import nn
from transformers import BertConfig, BertForMaskedLM
from transformers.models.bert.modeling_bert import BertIntermediate, BertOutput, BertSelfOutput

from retrlab.artifacts import Checkpoint
from retrlab.pretraining.bench import PretrainConfig, TinyConfig, new_mlm, pretrain, restore_module
from retrlab.pretraining.seed import TINY_CLS, cached_encoder_decoder, lm_head_loss

ENCODER_MASK = 0.3  # encoder_mlm_probability
DECODER_MASK = 0.5  # decoder_mlm_probability
MASK_POOL = 256  # each text pre-samples min(L, 256) decoder masks; every row picks one
NOT_MASKABLE = ("[CLS]", "[SEP]", "[PAD]")  # never masked: every row always sees [CLS]


# --- the rules: whole-word masks and the position-specific attention mask -------------------------
def word_groups(tokens: list[str], skip: tuple[str, ...] = NOT_MASKABLE) -> list[list[int]]:
    """Token positions grouped into whole words: a ``##`` piece joins the word before it."""
    groups: list[list[int]] = []
    for position, token in enumerate(tokens):
        if token in skip:
            continue
        if token.startswith("##") and groups and groups[-1][-1] == position - 1:
            groups[-1].append(position)
        else:
            groups.append([position])
    return groups


def whole_word_mask(tokens: list[str], rate: float, rng: random.Random,
                    skip: tuple[str, ...] = NOT_MASKABLE) -> list[int]:
    """1 at the positions of randomly chosen whole words, ``round(rate * len(tokens))`` of them (at
    least 1): words are shuffled and taken in turn, skipping any that would overshoot. The
    ``_whole_word_mask`` of HF's (v4) ``DataCollatorForWholeWordMask`` that RetroMAE's collator calls."""
    if not 0 < rate < 1:
        raise ValueError(f"mask rate must be in (0, 1), got {rate}")
    groups = word_groups(tokens, skip)
    rng.shuffle(groups)
    target, chosen = max(1, round(rate * len(tokens))), 0
    mask = [0] * len(tokens)
    for group in groups:
        if chosen >= target:
            break
        if chosen + len(group) > target:
            continue
        for position in group:
            mask[position] = 1
        chosen += len(group)
    return mask


def position_specific_mask(tokens: list[str], rate: float, rng: random.Random,
                           pool_size: int = MASK_POOL) -> torch.Tensor:
    """(L, L) bool, True where decoder row i may attend to position j.

    As ``RetroMAECollator``: pre-sample ``min(L, pool_size)`` whole-word masks at ``rate``; row i
    takes one of them at random and also hides position i (a row never sees its own token).
    [CLS] is never a candidate, so every row but row 0 (which has no label) sees it.
    """
    if not tokens:
        raise ValueError("empty token list")
    pool = [whole_word_mask(tokens, rate, rng) for _ in range(min(len(tokens), pool_size))]
    rows = []
    for i in range(len(tokens)):
        hidden = list(pool[rng.randint(0, len(pool) - 1)])
        hidden[i] = 1
        rows.append(hidden)
    return torch.tensor(rows) == 0


def corrupt(input_ids: torch.Tensor, mask: torch.Tensor, tokenizer,
            generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """BERT's corruption of the chosen positions: 80% [MASK], 10% a random token, 10% unchanged.
    Returns (encoder inputs, labels with -100 outside ``mask``)."""
    if input_ids.shape != mask.shape:
        raise ValueError(f"ids {tuple(input_ids.shape)} and mask {tuple(mask.shape)} differ in shape")
    mask = mask.bool()
    labels = input_ids.masked_fill(~mask, -100)
    roll = torch.rand(input_ids.shape, generator=generator)
    inputs = input_ids.masked_fill(mask & (roll < 0.8), tokenizer.mask_token_id)
    swap = mask & (roll >= 0.8) & (roll < 0.9)
    random_ids = torch.randint(len(tokenizer), input_ids.shape, generator=generator)
    return torch.where(swap, random_ids, inputs), labels


# --- the batch --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class RetroMAEConfig:
    encoder_mask: float = ENCODER_MASK
    decoder_mask: float = DECODER_MASK  # lower = each row sees more text = a stronger decoder
    decoder_layers: int = 1

    def key(self) -> str:
        return f"retromae-e{self.encoder_mask:g}-d{self.decoder_mask:g}-l{self.decoder_layers}"


@dataclass
class RetroMAEBatch:
    encoder_input_ids: torch.Tensor  # (B, T) whole-word masked, 80/10/10
    attention_mask: torch.Tensor  # (B, T)
    encoder_labels: torch.Tensor  # (B, T) -100 except at the masked positions
    decoder_input_ids: torch.Tensor  # (B, T) the unmasked text
    decoder_visible: torch.Tensor  # (B, T, T) bool, row i's visible positions (padding: none)
    decoder_labels: torch.Tensor  # (B, T) every token but [CLS] and the last [SEP]; padding -100

    def to(self, device) -> RetroMAEBatch:
        return RetroMAEBatch(*(t.to(device) for t in vars(self).values()))


def retromae_batch(tokenizer, texts: list[str], config: RetroMAEConfig, max_length: int,
                   rng: random.Random) -> RetroMAEBatch:
    """``RetroMAECollator`` for ``texts``: every random choice comes from ``rng`` (seeded)."""
    if not texts:
        raise ValueError("no texts")
    encoded = tokenizer(texts, truncation=True, max_length=max_length)["input_ids"]
    size, length = len(encoded), max(len(ids) for ids in encoded)
    ids = torch.full((size, length), tokenizer.pad_token_id, dtype=torch.long)
    attention = torch.zeros((size, length), dtype=torch.long)
    encoder_mask = torch.zeros((size, length), dtype=torch.bool)
    visible = torch.zeros((size, length, length), dtype=torch.bool)
    decoder_labels = torch.full((size, length), -100, dtype=torch.long)
    for row, row_ids in enumerate(encoded):
        n, tokens = len(row_ids), tokenizer.convert_ids_to_tokens(row_ids)
        ids[row, :n] = torch.tensor(row_ids)
        attention[row, :n] = 1
        encoder_mask[row, :n] = torch.tensor(whole_word_mask(tokens, config.encoder_mask, rng)) == 1
        visible[row, :n, :n] = position_specific_mask(tokens, config.decoder_mask, rng)
        decoder_labels[row, 1:n - 1] = ids[row, 1:n - 1]
    generator = torch.Generator().manual_seed(rng.getrandbits(62))
    encoder_ids, encoder_labels = corrupt(ids, encoder_mask, tokenizer, generator)
    return RetroMAEBatch(encoder_ids, attention, encoder_labels, ids, visible, decoder_labels)


# --- the enhanced decoder ---------------------------------------------------------------------------
def enhanced_streams(cls: torch.Tensor, input_ids: torch.Tensor,
                     embeddings: nn.Module) -> tuple[torch.Tensor, torch.Tensor]:
    """cls (B, H), ids (B, T), BERT's embeddings -> query stream H1 = cls + p_i and content stream
    H2 = [cls; emb(x_1..x_{T-1})], both (B, T, H). The encoder enters only through ``cls``."""
    if cls.dim() != 2 or input_ids.dim() != 2 or cls.shape[0] != input_ids.shape[0]:
        raise ValueError(f"need cls (B, H) and ids (B, T), got {tuple(cls.shape)}, {tuple(input_ids.shape)}")
    positions = embeddings.position_embeddings(torch.arange(input_ids.shape[1], device=input_ids.device))
    query = cls.unsqueeze(1) + positions.unsqueeze(0)  # (B, T, H)
    content = torch.cat([cls.unsqueeze(1), embeddings(input_ids=input_ids)[:, 1:]], dim=1)  # (B, T, H)
    return query, content


class TwoStreamLayer(nn.Module):
    """``BertLayerForDecoder``: attention with queries from one stream and keys/values from another,
    residual on the query stream, then BERT's feed-forward block (post-LN, as BERT)."""

    def __init__(self, config: BertConfig) -> None:
        super().__init__()
        hidden, self.heads = config.hidden_size, config.num_attention_heads
        self.query, self.key, self.value = (nn.Linear(hidden, hidden) for _ in range(3))
        self.dropout = nn.Dropout(config.attention_probs_dropout_prob)
        self.attention_output = BertSelfOutput(config)  # LayerNorm(dense(context) + query)
        self.intermediate, self.output = BertIntermediate(config), BertOutput(config)

    def forward(self, query: torch.Tensor, content: torch.Tensor, visible: torch.Tensor) -> torch.Tensor:
        """query, content (B, T, H); visible (B, T, T) bool -> (B, T, H)."""
        size, length, hidden = query.shape
        head_dim = hidden // self.heads

        def split(x: torch.Tensor) -> torch.Tensor:  # (B, T, H) -> (B, heads, T, head_dim)
            return x.view(size, -1, self.heads, head_dim).transpose(1, 2)

        q, k, v = split(self.query(query)), split(self.key(content)), split(self.value(content))
        scores = q @ k.transpose(-1, -2) / math.sqrt(head_dim)  # (B, heads, T, T)
        # a large negative, not -inf: a padding row that sees nothing gets a uniform (unused) average
        scores = scores.masked_fill(~visible.unsqueeze(1), torch.finfo(scores.dtype).min)
        context = self.dropout(scores.softmax(-1)) @ v  # (B, heads, T, head_dim)
        context = context.transpose(1, 2).reshape(size, length, hidden)
        attended = self.attention_output(context, query)
        return self.output(self.intermediate(attended), attended)


class RetroMAEDecoder(nn.Module):
    """``layers`` two-stream layers on the query stream (content stream fixed); RetroMAE uses 1."""

    def __init__(self, config: BertConfig, layers: int = 1) -> None:
        super().__init__()
        if layers < 1:
            raise ValueError(f"the decoder needs at least one layer, got {layers}")
        self.layers = nn.ModuleList(TwoStreamLayer(config) for _ in range(layers))

    def forward(self, query: torch.Tensor, content: torch.Tensor, visible: torch.Tensor) -> torch.Tensor:
        for layer in self.layers:
            query = layer(query, content, visible)
        return query


def decoder_loss(mlm: BertForMaskedLM, decoder: RetroMAEDecoder, cls: torch.Tensor,
                 batch: RetroMAEBatch) -> torch.Tensor:
    """Reconstruct every token of the unmasked text from [CLS] and each row's visible positions."""
    query, content = enhanced_streams(cls, batch.decoder_input_ids, mlm.bert.embeddings)
    return lm_head_loss(mlm, decoder(query, content, batch.decoder_visible), batch.decoder_labels)


def retromae_step_loss(mlm: BertForMaskedLM, decoder: RetroMAEDecoder,
                       batch: RetroMAEBatch) -> tuple[torch.Tensor, dict[str, float]]:
    """RetroMAE's loss on one batch: encoder MLM + decoder reconstruction (``modeling.py``)."""
    batch = batch.to(mlm.device)
    hidden = mlm.bert(input_ids=batch.encoder_input_ids,
                      attention_mask=batch.attention_mask).last_hidden_state  # (B, T, H)
    mlm_part = lm_head_loss(mlm, hidden, batch.encoder_labels)
    decoder_part = decoder_loss(mlm, decoder, hidden[:, 0], batch)
    return mlm_part + decoder_part, {"mlm": mlm_part.item(), "decoder": decoder_part.item()}


# --- pretraining and the cache -----------------------------------------------------------------------
def new_decoder(mlm: BertForMaskedLM, config: RetroMAEConfig) -> RetroMAEDecoder:
    """A decoder initialised like the encoder (``c_head.apply(lm._init_weights)``: N(0, 0.02))."""
    decoder = RetroMAEDecoder(mlm.config, config.decoder_layers)
    decoder.apply(mlm._init_weights)
    return decoder


def pretrain_retromae(tokenizer, texts: list[str], pretrain_config: PretrainConfig,
                      config: RetroMAEConfig = RetroMAEConfig(), tiny: TinyConfig = TINY_CLS,
                      progress: bool = True, start: BertForMaskedLM | None = None) -> Checkpoint:
    """A fresh tiny BERT (or ``start``, trained in place) + RetroMAE decoder trained
    ``pretrain_config.steps`` steps on random ``texts``; the checkpoint's ``state`` holds the decoder
    (``decoder_from`` rebuilds it)."""
    if start is not None:
        torch.manual_seed(pretrain_config.seed)  # the decoder's initialisation, as after new_mlm
    mlm = new_mlm(tokenizer, tiny, pretrain_config.seed) if start is None else start
    decoder = new_decoder(mlm, config)  # right after new_mlm's manual_seed: seeded too

    def loss_fn(model: BertForMaskedLM, rng: random.Random):
        sample = rng.sample(texts, pretrain_config.batch_size)
        batch = retromae_batch(tokenizer, sample, config, tiny.passage_max_length, rng)
        return retromae_step_loss(model, decoder, batch)

    history = pretrain(mlm, tokenizer, texts, replace(pretrain_config, mlm_weight=0.0), loss_fn=loss_fn,
                       tiny=tiny, progress=progress, extra=decoder)
    return Checkpoint(mlm, history, {f"decoder.{k}": v for k, v in decoder.state_dict().items()})


def decoder_from(checkpoint: Checkpoint, config: RetroMAEConfig = RetroMAEConfig()) -> RetroMAEDecoder:
    """The trained decoder of a RetroMAE checkpoint (in eval mode)."""
    return restore_module(new_decoder(checkpoint.mlm, config), checkpoint, "decoder.", "RetroMAE")


# the RetroMAE checkpoint: cached_retromae(tokenizer, texts, steps, seed, smoke, config=RetroMAEConfig(...), ...)
cached_retromae = functools.partial(cached_encoder_decoder, pretrain_retromae, config=RetroMAEConfig())


# --- how much does the decoder use [CLS]? --------------------------------------------------------
@torch.inference_mode()
def reconstruction_loss(mlm: BertForMaskedLM, decoder: RetroMAEDecoder, tokenizer, texts: list[str],
                        config: RetroMAEConfig, max_length: int, shuffle_cls: bool = False,
                        batch_size: int = 64, seed: int = 0) -> float:
    """Decoder reconstruction loss per token on ``texts`` (encoder reads them unmasked; decoder masks
    drawn with ``seed``, so two calls see the same masks). ``shuffle_cls`` hands each text the [CLS]
    of the next text in its batch: the loss increase is what [CLS] carries."""
    was = mlm.training, decoder.training
    mlm.eval()
    decoder.eval()
    rng, total, count = random.Random(seed), 0.0, 0
    for start in range(0, len(texts), batch_size):
        batch = retromae_batch(tokenizer, texts[start:start + batch_size], config, max_length, rng)
        batch = batch.to(mlm.device)
        unmasked = mlm.bert(input_ids=batch.decoder_input_ids, attention_mask=batch.attention_mask)
        cls = unmasked.last_hidden_state[:, 0]  # (B, H)
        if shuffle_cls:
            cls = cls.roll(1, dims=0)
        tokens = int((batch.decoder_labels != -100).sum())
        total += decoder_loss(mlm, decoder, cls, batch).item() * tokens
        count += tokens
    mlm.train(was[0])
    decoder.train(was[1])
    return total / count
