"""The model card: the README.md that ``BiEncoder.save_pretrained`` writes next to the weights.

It follows Hugging Face's model-card convention (``huggingface_hub.ModelCard``): a YAML metadata
header (``base_model``, ``library_name``, ``pipeline_tag``, ``tags``) and Markdown below. The card
says what the model itself knows (pooling, normalisation, towers, token limits) and what the caller
passes in a ``ModelCard`` (the base model, the method and its settings, the data, the metrics
measured in that run), nothing else: a card without metrics has no metrics section. Nothing is
uploaded; the folder is ready for the Hub's own tools (``huggingface-cli upload``).

    card = ModelCard(base_model="sentence-transformers/all-MiniLM-L6-v2", method="DPR",
                     config=train_config, settings={"sampler": "in-batch"}, data="wiki-car",
                     split="test", metrics={"MRR@10": 0.61})
    model.save_pretrained(folder, card=card)
"""
from __future__ import annotations

import dataclasses
import math
import numbers
from dataclasses import dataclass, field
from typing import Any

from huggingface_hub import ModelCardData

TAGS = ["sentence-transformers", "sentence-similarity", "feature-extraction", "dense-retrieval", "retrlab"]


@dataclass
class ModelCard:
    """What the caller knows about a model's training; every field is optional."""
    base_model: str | None = None  # the checkpoint training started from (a hub name or a path)
    method: str | None = None  # e.g. "DPR: in-batch negatives + one BM25 negative"
    config: Any = None  # a TrainConfig (any dataclass instance): its fields join ``settings``
    settings: dict = field(default_factory=dict)  # more settings: sampler, precision, ...
    data: str | None = None  # the training and evaluation data
    split: str | None = None  # the split ``metrics`` were measured on
    metrics: dict = field(default_factory=dict)  # metric name -> value, as measured in the run

    def __post_init__(self) -> None:
        if self.config is not None and not (dataclasses.is_dataclass(self.config)
                                            and not isinstance(self.config, type)):
            raise TypeError(f"ModelCard.config must be a dataclass instance such as a TrainConfig, "
                            f"got {type(self.config).__name__}")
        for name, value in self.metrics.items():
            if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
                raise ValueError(f"ModelCard.metrics[{name!r}] must be a finite number, got {value!r}")

    def training_settings(self) -> dict:
        return {**(dataclasses.asdict(self.config) if self.config is not None else {}), **self.settings}

    def render(self, model: dict) -> str:
        """The README.md text; ``model`` holds the model's facts (``BiEncoder.settings()`` and ``dim``)."""
        header = ModelCardData(base_model=self.base_model, library_name="sentence-transformers",
                               pipeline_tag="sentence-similarity", tags=TAGS).to_yaml()
        sections = [model_section(self.base_model, model), self.training_section(), self.data_section(),
                    self.metrics_section(), usage_section(model["shared"])]
        return f"---\n{header}\n---\n\n# Bi-encoder trained with retrlab\n\n" + "\n".join(s for s in sections if s)

    def training_section(self) -> str:
        settings = self.training_settings()
        if not self.method and not settings:
            return ""
        lines = ["## Training", ""] + ([f"Method: {self.method}", ""] if self.method else [])
        if settings:
            lines += ["| setting | value |", "|---|---|"] + [f"| {k} | {v} |" for k, v in settings.items()]
        return "\n".join(lines) + "\n"

    def data_section(self) -> str:
        if not self.data and not self.split:
            return ""
        lines = ([f"- Data: {self.data}"] if self.data else []) + (
            [f"- Metrics measured on its `{self.split}` split"] if self.split else [])
        return "## Data\n\n" + "\n".join(lines) + "\n"

    def metrics_section(self) -> str:
        if not self.metrics:
            return ""
        where = f" on the `{self.split}` split" if self.split else ""
        rows = [f"| {name} | {format_value(value)} |" for name, value in self.metrics.items()]
        intro = f"Measured{where} in the run that trained this model."
        return "\n".join(["## Test metrics", "", intro, "", "| metric | value |", "|---|---|", *rows]) + "\n"


def format_value(value: float) -> str:
    return str(value) if isinstance(value, numbers.Integral) else f"{value:.4f}"


def model_section(base_model: str | None, model: dict) -> str:
    towers = ("shared: one transformer for queries and passages" if model["shared"] else
              "separate: a query transformer and a passage transformer (sentence-transformers `Router`)")
    pooling = {"mean": "mean of the token vectors", "cls": "the [CLS] token's vector"}[model["pooling"]]
    similarity = "cosine (vectors L2-normalised)" if model["normalize"] else "dot product (not normalised)"
    lines = ([f"- Base model: `{base_model}`"] if base_model else []) + [
        f"- Towers: {towers}", f"- Pooling: {pooling}", f"- Similarity: {similarity}",
        f"- Dimension: {model['dim']}",
        f"- Token limits: queries {model['query_max_length']}, passages {model['passage_max_length']}"]
    return "## Model\n\n" + "\n".join(lines) + "\n"


def usage_section(shared: bool) -> str:
    extra = "" if shared else "Queries and passages go through their own towers: use `encode_query` and `encode_document`.\n\n"
    return (f"## Usage\n\n{extra}```python\nfrom sentence_transformers import SentenceTransformer\n\n"
            f'model = SentenceTransformer("path/to/this/folder")\n'
            f'scores = model.encode_query(["a question"]) @ model.encode_document(["a passage"]).T\n```\n\n'
            f"In retrlab: `BiEncoder.from_pretrained(\"path/to/this/folder\")`.\n")
