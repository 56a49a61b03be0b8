"""The bad-input suite: every bad input gets a clear error naming the problem, and a killed cache
build leaves nothing half-written behind.

Each case is (id, what to run, the error type, a pattern the message must match). The patterns
name the problem (the field, the id, the file and line, the allowed range), so a case fails if the
package raises something vague (an IndexError from deep inside, a TraitError, a ZeroDivisionError)
or raises nothing. ``len(CASES)`` is the number of bad inputs tried.
"""
from __future__ import annotations

import json
import math
import os
import random
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from types import SimpleNamespace
from typing import Callable

import numpy as np
import pytest
import torch

from retrlab.cache import CacheError, cached_dir, check_writable, home, load_json
from retrlab.data.beir import ChecksumError, DataFormatError, download_beir, load_beir
from retrlab.data.dataset import RetrievalData
from retrlab.methods.rocketqa import cross_batch_step
from retrlab.encoders import BiEncoder
from retrlab.index import FlatIndex
from retrlab.losses import listwise_loss
from retrlab.evaluation import bm25_run, dense_run
from retrlab.metrics import check_trec_fields, evaluate, read_trec_run, recall, write_trec_run
from retrlab.negatives.simans import sample_without_replacement, simans_negatives, simans_weights
from retrlab.negatives.uniform import random_negatives, uniform_from_pool
from retrlab.pool import pool_from_ranking
from retrlab.stats import mean_std, paired_bootstrap
from retrlab.train import Hook, TrainConfig, QueryBatches, train
from retrlab.viz.explore import Settings
from retrlab.viz.widgets import DistributionView, SimilarityExplorer, TrainingBoard
from test_beir import CORPUS, DEV_QRELS, QUERIES, TEST_QRELS, _jsonl, _tsv, write_beir

ROOT = Path(__file__).resolve().parents[1]


@dataclass
class Case:
    id: str
    run: Callable[[SimpleNamespace], object]
    error: type[Exception]
    match: str


@cache
def tiny_model() -> BiEncoder:
    return BiEncoder.tiny(layers=1, hidden=32, heads=2, passage_max_length=32)


def toy_pool(data: RetrievalData, scores=None, positive=0.8):
    """Every train query's non-positive train passages, scored 0.9 down to 0.1 (or ``scores``)."""
    qids = data.qids("train")
    ranked = [[p for p in data.search_pids("train") if p not in data.positives[q]] for q in qids]
    scores = scores or [np.linspace(0.9, 0.1, len(r)) for r in ranked]
    return pool_from_ranking(data, "toy", qids, ranked, scores, np.full(len(qids), positive), 10)


def beir(ctx, **files) -> RetrievalData:
    """Write the tiny BEIR folder of tests/test_beir.py with some files replaced, and load it."""
    folder = ctx.tmp / f"beir{len(list(ctx.tmp.iterdir()))}"
    return load_beir(write_beir(folder, **files))


def beir_bytes(ctx, name: str, raw: bytes) -> RetrievalData:
    folder = write_beir(ctx.tmp / "raw")
    (folder / name).write_bytes(raw)
    return load_beir(folder)


def replace_data(data: RetrievalData, **parts) -> RetrievalData:
    fields = {k: getattr(data, k) for k in ("name", "corpus", "queries", "qrels", "positives", "splits",
                                            "split_pids")}
    return RetrievalData(**{**fields, **parts})


def nan_step(model, data, batch, tau):
    return model.embed_queries(batch.queries).sum() * float("nan")


def short_train(ctx, step_fn=None, **kwargs):
    config = TrainConfig(steps=2, batch_size=2, lr=1e-3, tau=1.0)
    return train(tiny_model(), ctx.data, config, step_fn=step_fn, progress=False, **kwargs)


def explorer(ctx, **kwargs) -> SimilarityExplorer:
    return SimilarityExplorer(ctx.pool, ctx.data, **kwargs)


def trec(ctx, raw: bytes):
    (ctx.tmp / "run.trec").write_bytes(raw)
    return read_trec_run(ctx.tmp / "run.trec")


def home_at(ctx, path: Path) -> Path:
    ctx.setenv("RETRLAB_HOME", str(path))
    return home()


def a_file(ctx) -> Path:
    (ctx.tmp / "a-file").write_text("not a folder")
    return ctx.tmp / "a-file"


def saved_data(ctx, name: str, text: str) -> RetrievalData:
    """The toy data saved to a folder, one of its JSON files replaced by ``text``, and loaded."""
    folder = ctx.data.save(ctx.tmp / "saved")
    (folder / name).write_text(text)
    return RetrievalData.load(folder)


def grade0_test_split(ctx) -> RetrievalData:
    return beir(ctx, test=_tsv(["q1\td3\t0", "q2\td1\t0"]))


CORPUS_HEAD = _jsonl(CORPUS)
CASES = [
    # --- BEIR files: malformed lines, missing fields, bad ids, bad qrels -----------------------
    Case("beir-bad-json-corpus", lambda c: beir(c, corpus=CORPUS_HEAD + '{"_id": "d9", "text": \n'),
         DataFormatError, r"corpus\.jsonl:6: malformed JSON"),
    Case("beir-bad-json-queries", lambda c: beir(c, queries='{"_id": "q1" "text": "x"}\n'),
         DataFormatError, r"queries\.jsonl:1: malformed JSON"),
    Case("beir-trailing-garbage", lambda c: beir(c, corpus=CORPUS_HEAD + '{"_id": "d9", "text": "x"} junk\n'),
         DataFormatError, r"corpus\.jsonl:6: malformed JSON \(Extra data\)"),
    Case("beir-json-array", lambda c: beir(c, queries='[1, 2]\n'),
         DataFormatError, r"queries\.jsonl:1: expected a JSON object, got list"),
    Case("beir-missing-id-corpus", lambda c: beir(c, corpus=CORPUS_HEAD + '{"text": "no id"}\n'),
         DataFormatError, r"corpus\.jsonl:6: missing field '_id'"),
    Case("beir-missing-id-queries", lambda c: beir(c, queries='{"text": "no id"}\n'),
         DataFormatError, r"queries\.jsonl:1: missing field '_id'"),
    Case("beir-missing-text", lambda c: beir(c, corpus=CORPUS_HEAD + '{"_id": "d9", "title": "T"}\n'),
         DataFormatError, r"corpus\.jsonl:6: missing field 'text'"),
    Case("beir-null-id", lambda c: beir(c, corpus=CORPUS_HEAD + '{"_id": null, "text": "x"}\n'),
         DataFormatError, r"corpus\.jsonl:6: field '_id' must be a non-empty string or an integer, got None"),
    Case("beir-empty-id", lambda c: beir(c, queries=_jsonl(QUERIES) + '{"_id": " ", "text": "x"}\n'),
         DataFormatError, r"queries\.jsonl:4: field '_id' must be a non-empty string"),
    Case("beir-object-id", lambda c: beir(c, corpus=CORPUS_HEAD + '{"_id": {"a": 1}, "text": "x"}\n'),
         DataFormatError, r"corpus\.jsonl:6: field '_id' .* got \{'a': 1\}"),
    Case("beir-text-not-string", lambda c: beir(c, queries=_jsonl(QUERIES) + '{"_id": "q9", "text": 5}\n'),
         DataFormatError, r"queries\.jsonl:4: field 'text' must be a string"),
    Case("beir-title-not-string", lambda c: beir(c, corpus=CORPUS_HEAD + '{"_id": "d9", "title": 5, "text": "x"}\n'),
         DataFormatError, r"corpus\.jsonl:6: field 'title' must be a string"),
    Case("beir-duplicate-id", lambda c: beir(c, corpus=CORPUS_HEAD + '{"_id": "d1", "text": "again"}\n'),
         DataFormatError, r"corpus\.jsonl:6: duplicate _id 'd1' \(first on line 1\)"),
    Case("beir-not-utf8", lambda c: beir_bytes(c, "corpus.jsonl", CORPUS_HEAD.encode() + b'{"_id": "d9", "text": "caf\xe9"}\n'),
         DataFormatError, r"corpus\.jsonl:6: not UTF-8 text"),
    Case("beir-empty-passage", lambda c: beir(c, corpus=CORPUS_HEAD + '{"_id": "d9", "title": "", "text": " "}\n'),
         DataFormatError, r"corpus\.jsonl:6: passage 'd9' has empty text and title"),
    Case("beir-empty-query", lambda c: beir(c, queries=_jsonl(QUERIES) + '{"_id": "q9", "text": ""}\n'),
         DataFormatError, r"queries\.jsonl:4: query 'q9' has empty text"),
    Case("qrels-two-columns", lambda c: beir(c, test=_tsv(["q1\td1"])),
         DataFormatError, r"test\.tsv:2: expected 3 tab-separated columns .* got 2"),
    Case("qrels-four-columns", lambda c: beir(c, test=_tsv(["q1\td1\t1\textra"])),
         DataFormatError, r"test\.tsv:2: expected 3 tab-separated columns .* got 4"),
    Case("qrels-space-separated", lambda c: beir(c, dev=_tsv(["q3 d3 1"])),
         DataFormatError, r"dev\.tsv:2: expected 3 tab-separated columns .* got 1"),
    Case("qrels-float-score", lambda c: beir(c, test=_tsv(["q1\td1\t0.5"])),
         DataFormatError, r"test\.tsv:2: score '0\.5' is not an integer"),
    Case("qrels-word-score", lambda c: beir(c, test=_tsv(["q1\td1\trelevant"])),
         DataFormatError, r"test\.tsv:2: score 'relevant' is not an integer"),
    Case("qrels-no-header", lambda c: beir(c, test="q1\td1\t1\n"),
         DataFormatError, r"test\.tsv:1: expected the header"),
    Case("qrels-empty-file", lambda c: beir(c, dev=""),
         DataFormatError, r"dev\.tsv:1: empty qrels file"),
    Case("qrels-unknown-query", lambda c: beir(c, dev=_tsv([DEV_QRELS[0], "q404\td1\t1"])),
         DataFormatError, r"dev\.tsv:3: unknown query id 'q404' \(not in queries\.jsonl\)"),
    Case("qrels-unknown-passage", lambda c: beir(c, test=_tsv([*TEST_QRELS, "q1\td404\t1"])),
         DataFormatError, r"test\.tsv:6: unknown corpus id 'd404' \(not in corpus\.jsonl\)"),
    Case("beir-missing-folder", lambda c: load_beir(c.tmp / "nowhere"),
         FileNotFoundError, r"BEIR folder not found: .*nowhere"),
    # --- RetrievalData built by hand: empty texts, ids that point nowhere ---------------------
    Case("data-empty-query", lambda c: replace_data(c.data, queries={**c.data.queries, "q0": "  "}),
         ValueError, r"query 'q0' has no text"),
    Case("data-empty-passage", lambda c: replace_data(c.data, corpus={**c.data.corpus, "c1": {"title": "", "text": ""}}),
         ValueError, r"passage 'c1' has an empty text and title"),
    Case("data-qrels-unknown-passage", lambda c: replace_data(c.data, qrels={**c.data.qrels, "q0": {"zz": 1}}),
         ValueError, r"qrels of query 'q0' name passage 'zz', which is not in the corpus"),
    Case("data-positives-unknown-query", lambda c: replace_data(c.data, positives={**c.data.positives, "q9": ["c1"]}),
         ValueError, r"positives name query 'q9', which is not among the queries"),
    Case("data-split-unknown-query", lambda c: replace_data(c.data, splits={"train": ["q0", "q77"]}),
         ValueError, r"split 'train' names query 'q77'"),
    Case("data-split-pids-unknown", lambda c: replace_data(c.data, split_pids={"train": ["c1", "x9"]}),
         ValueError, r"search corpus of split 'train' names passage 'x9'"),
    Case("data-subset-negative", lambda c: c.data.subset({"train": -1}),
         ValueError, r"subset sizes must be >= 0, got \{'train': -1\}"),
    Case("data-unknown-split", lambda c: c.data.qids("validation"),
         KeyError, r"unknown split 'validation'"),
    # --- models: missing paths, bad texts, bad lengths ----------------------------------------
    Case("model-missing-path", lambda c: BiEncoder.from_pretrained(c.tmp / "no-model"),
         FileNotFoundError, r"model path .*no-model does not exist"),
    Case("model-folder-without-config", lambda c: BiEncoder.from_pretrained(c.tmp),
         FileNotFoundError, r"is not a model folder: it has no config\.json"),
    Case("model-unknown-name-offline", lambda c: BiEncoder.from_pretrained("no-such-org/no-such-model-xyz"),
         FileNotFoundError, r"model 'no-such-org/no-such-model-xyz' not found: no such local folder"),
    Case("model-max-length-0", lambda c: BiEncoder.tiny(layers=1, hidden=32, heads=2, passage_max_length=0),
         ValueError, r"passage_max_length must be an integer >= 2"),
    Case("model-bad-pooling", lambda c: BiEncoder.tiny(layers=1, hidden=32, heads=2, pooling="max"),
         ValueError, r"pooling must be one of \('mean', 'cls'\), got 'max'"),
    Case("encode-bare-string", lambda c: tiny_model().encode_passages("one text", progress=False),
         TypeError, r"pass a list of texts, not a single string"),
    Case("encode-none-text", lambda c: tiny_model().encode_queries(["ok", None]),
         TypeError, r"text 1 is a NoneType, not a str"),
    Case("encode-batch-size-0", lambda c: tiny_model().encode_passages(["a"], batch_size=0, progress=False),
         ValueError, r"batch_size must be an integer >= 1, got 0"),
    Case("embed-empty-list", lambda c: tiny_model().embed_passages([]),
         ValueError, r"no texts to embed: the list is empty"),
    # --- training: out-of-range settings, NaN losses -------------------------------------------
    Case("train-steps-0", lambda c: TrainConfig(steps=0), ValueError, r"TrainConfig\.steps must be an integer >= 1, got 0"),
    Case("train-steps-negative", lambda c: TrainConfig(steps=-5), ValueError, r"TrainConfig\.steps .* got -5"),
    Case("train-batch-0", lambda c: TrainConfig(batch_size=0), ValueError, r"TrainConfig\.batch_size .* got 0"),
    Case("train-batch-float", lambda c: TrainConfig(batch_size=2.5), ValueError, r"TrainConfig\.batch_size .* got 2\.5"),
    Case("train-lr-0", lambda c: TrainConfig(lr=0), ValueError, r"TrainConfig\.lr must be a finite number > 0, got 0"),
    Case("train-lr-nan", lambda c: TrainConfig(lr=math.nan), ValueError, r"TrainConfig\.lr .* got nan"),
    Case("train-tau-negative", lambda c: TrainConfig(tau=-0.05), ValueError, r"TrainConfig\.tau .* got -0\.05"),
    Case("train-warmup-1.5", lambda c: TrainConfig(warmup_ratio=1.5), ValueError, r"warmup_ratio must be in \[0, 1\]"),
    Case("train-weight-decay-negative", lambda c: TrainConfig(weight_decay=-1.0), ValueError, r"weight_decay .* >= 0"),
    Case("train-batch-exceeds-queries", lambda c: QueryBatches(c.data, 9, seed=0),
         ValueError, r"batch_size 9 exceeds the 4 labelled train queries"),
    Case("batches-size-0", lambda c: QueryBatches(c.data, 0, seed=0), ValueError, r"batch_size must be >= 1, got 0"),
    Case("hook-every-0", lambda c: Hook(0, lambda step, model: None), ValueError, r"Hook\.every must be an integer >= 1"),
    Case("train-checkpoint-every-negative", lambda c: short_train(c, checkpoint=c.tmp / "c.pt", checkpoint_every=-1),
         ValueError, r"checkpoint_every must be >= 0"),
    Case("train-nan-loss", lambda c: short_train(c, step_fn=nan_step),
         FloatingPointError, r"the training loss is nan at step 1"),
    Case("loss-tau-0", lambda c: listwise_loss(torch.ones(2, 2), torch.tensor([0, 1]), tau=0),
         ValueError, r"temperature must be > 0, got 0"),
    Case("cross-batch-0-shards", lambda c: cross_batch_step(0), ValueError, r"shards must be >= 1, got 0"),
    # --- metrics and search: NaN scores, cut-offs k <= 0 ---------------------------------------
    Case("metrics-nan-score", lambda c: evaluate({"q": {"a": math.nan}}, {"q": {"a": 1}}, ["MRR@10"]),
         ValueError, r"score of qid 'q' pid 'a' is NaN"),
    Case("metrics-numpy-nan", lambda c: evaluate({"q": {"a": np.float32("nan")}}, {"q": {"a": 1}}, ["MRR@10"]),
         ValueError, r"score of qid 'q' pid 'a' is NaN"),
    Case("metrics-k-0", lambda c: evaluate({"q": {"a": 1.0}}, {"q": {"a": 1}}, ["MRR@0"]),
         ValueError, r"measure 'MRR@0': cut-off k must be >= 1"),
    Case("metrics-k-negative", lambda c: recall(["a"], {"a": 1}, -1),
         ValueError, r"cut-off k must be an integer >= 1, got -1"),
    Case("metrics-unknown-measure", lambda c: evaluate({"q": {"a": 1.0}}, {"q": {"a": 1}}, ["MAP@10"]),
         ValueError, r"unknown measure 'MAP@10'"),
    Case("index-nan-embeddings", lambda c: FlatIndex(np.array([[np.nan, 1.0]])),
         ValueError, r"embeddings contains NaN or infinite values"),
    Case("index-empty", lambda c: FlatIndex(np.zeros((0, 4))),
         ValueError, r"cannot build an index over 0 embeddings"),
    Case("index-k-0", lambda c: FlatIndex(np.eye(2)).search(np.eye(2)[:1], 0), ValueError, r"k must be >= 1, got 0"),
    # --- SimANS and pools: NaN scores, depth/n out of range ------------------------------------
    Case("simans-nan-scores", lambda c: simans_weights(np.array([0.1, np.nan]), 0.2),
         ValueError, r"scores and the positive's score must be finite"),
    Case("simans-nan-positive", lambda c: simans_weights(np.array([0.1]), math.nan),
         ValueError, r"scores and the positive's score must be finite"),
    Case("simans-a-negative", lambda c: simans_weights(np.array([0.1]), 0.2, a=-1),
         ValueError, r"a must be a finite number >= 0, got -1"),
    Case("simans-nan-weights", lambda c: sample_without_replacement(np.array([0.5, np.nan]), 1, random.Random(0)),
         ValueError, r"sampling weights must be finite and >= 0"),
    Case("simans-negative-weights", lambda c: sample_without_replacement(np.array([0.5, -1.0]), 1, random.Random(0)),
         ValueError, r"sampling weights must be finite and >= 0"),
    Case("simans-depth-0", lambda c: simans_negatives(c.pool, depth=0), ValueError, r"depth must be >= 1"),
    Case("simans-n-negative", lambda c: simans_negatives(c.pool, n=-1), ValueError, r"n must be >= 0, got -1"),
    Case("pool-nan-candidate-score", lambda c: toy_pool(c.data, scores=[np.array([0.5, np.nan, 0.1, 0.0, 0.0, 0.0, 0.0, 0.0])] * 4),
         ValueError, r"query 'q\d': the candidate scores contain NaN"),
    Case("pool-nan-positive-score", lambda c: toy_pool(c.data, positive=math.nan),
         ValueError, r"the labelled positive's score is NaN or infinite for 4 queries"),
    Case("pool-depth-0", lambda c: pool_from_ranking(c.data, "x", ["q0"], [["c2"]], [np.array([0.9])], np.array([0.5]), 0),
         ValueError, r"depth must be >= 1, got 0"),
    Case("pool-length-mismatch", lambda c: pool_from_ranking(c.data, "x", ["q0"], [["c2", "c3"]], [np.array([0.9])], np.array([0.5]), 5),
         ValueError, r"query 'q0': 2 ranked pids but 1 scores"),
    Case("pool-unknown-query", lambda c: pool_from_ranking(c.data, "x", ["q404"], [["c2"]], [np.array([0.9])], np.array([0.5]), 5),
         KeyError, r"query 'q404' has no labelled positive in 'toy'"),
    Case("uniform-depth-0", lambda c: uniform_from_pool(c.pool, 1, depth=0), ValueError, r"depth must be >= 1"),
    Case("random-negatives-too-many", lambda c: random_negatives(c.data, n=50)("q0", random.Random(0)),
         ValueError, r"cannot draw 50 negatives for query 'q0': the train corpus has only 8 passages"),
    Case("settings-depth-0", lambda c: Settings(depth=0), ValueError, r"depth \(k\) must be >= 1, got 0"),
    Case("settings-n-above-depth", lambda c: Settings(depth=2, n=5), ValueError, r"n must be between 0 and depth"),
    Case("settings-nan-a", lambda c: Settings(a=math.nan), ValueError, r"a must be a finite number >= 0, got nan"),
    Case("stats-empty", lambda c: mean_std([]), ValueError, r"mean_std needs at least one finite value"),
    Case("stats-nan", lambda c: mean_std([0.5, math.nan]), ValueError, r"mean_std needs at least one finite value"),
    Case("bootstrap-nan", lambda c: paired_bootstrap({"q": math.nan}, {"q": 0.5}),
         ValueError, r"per-query values must be finite; NaN or infinite for \['q'\]"),
    # --- widgets: constructor parameters and slider values out of range ------------------------
    Case("explorer-a-above-a_max", lambda c: explorer(c, settings=Settings(a=1000)),
         ValueError, r"settings\.a=1000 is outside the a slider's range \[0, 500\.0\]"),
    Case("explorer-b-outside-range", lambda c: explorer(c, settings=Settings(b=0.9)),
         ValueError, r"settings\.b=0\.9 is outside the b slider's range"),
    Case("explorer-a_max-0", lambda c: explorer(c, a_max=0), ValueError, r"a_max must be a finite number > 0"),
    Case("explorer-b_range-reversed", lambda c: explorer(c, b_range=(0.5, -0.5)),
         ValueError, r"b_range must be two finite numbers \(low, high\) with low < high"),
    Case("explorer-max_rows-negative", lambda c: explorer(c, max_rows=-1), ValueError, r"max_rows must be >= 0"),
    Case("explorer-no-qids", lambda c: explorer(c, qids=[]), ValueError, r"qids is empty"),
    Case("explorer-unknown-qid", lambda c: explorer(c, qids=["q404"]), KeyError, r"query 'q404' is not in this toy pool"),
    Case("explorer-set-a-negative", lambda c: explorer(c).set(a=-1),
         ValueError, r"a=-1 is outside the slider's range \[0\.0, 500\.0\]"),
    Case("explorer-set-a-nan", lambda c: explorer(c).set(a=math.nan), ValueError, r"a=nan is outside the slider's range"),
    Case("explorer-set-depth-too-deep", lambda c: explorer(c).set(depth=100),
         ValueError, r"depth=100 is outside the slider's range \[1, 8\]"),
    Case("explorer-set-depth-0", lambda c: explorer(c).set(depth=0), ValueError, r"depth=0 is outside the slider's range"),
    Case("explorer-set-depth-string", lambda c: explorer(c).set(depth="3"), TypeError, r"depth must be a number, got '3'"),
    Case("explorer-set-kernel", lambda c: explorer(c).set(kernel="box"), ValueError, r"kernel='box' is not one of the choices"),
    Case("explorer-set-unknown-query", lambda c: explorer(c).set(qid="q404"),
         KeyError, r"query 'q404' is not among the explorer's 4 queries"),
    Case("explorer-set-unknown-control", lambda c: explorer(c).set(temperature=1),
         ValueError, r"unknown control\(s\) \['temperature'\]"),
    Case("explorer-ce-wrong-length", lambda c: explorer(c, ce_probabilities={q: np.full(9, 0.3) for q in c.pool.qids}),
         ValueError, r"ce_probabilities\['q0'\] has shape \(9,\); give one probability for each of the first 1..8"),
    Case("explorer-ce-nan", lambda c: explorer(c, ce_probabilities={q: np.full(8, np.nan) for q in c.pool.qids}),
         ValueError, r"ce_probabilities\['q0'\] must be probabilities in \[0, 1\] \(no NaN\)"),
    Case("explorer-ce-missing-query", lambda c: explorer(c, ce_probabilities={}),
         KeyError, r"ce_probabilities has no entry for query 'q0'"),
    Case("distribution-set-n-0", lambda c: DistributionView(c.pool).set(n=0), ValueError, r"n=0 is outside the slider's range \[1, 8\]"),
    Case("distribution-empty-pool", lambda c: DistributionView(pool_from_ranking(c.data, "empty", [], [], [], np.zeros(0), 5)),
         ValueError, r"the empty pool has no candidates"),
    Case("board-smooth-0", lambda c: TrainingBoard(smooth=0), ValueError, r"smooth .* must be >= 1, got 0"),
    Case("board-no-names", lambda c: TrainingBoard(names=()), ValueError, r"names is empty"),
    Case("board-hook-0", lambda c: TrainingBoard().hook(0), ValueError, r"every must be >= 1, got 0"),
    # --- TREC run files: encoding, empty files, scores that are not finite, fields checked first --
    Case("trec-bad-utf8", lambda c: trec(c, b"q1 Q0 d1 1 0.9 t\nq1 Q0 d\xff2 2 0.5 t\n"),
         ValueError, r"run\.trec:2: not UTF-8 text \(invalid start byte at byte 7 of the line\)"),
    Case("trec-empty-file", lambda c: trec(c, b""), ValueError, r"run\.trec: the run file is empty"),
    Case("trec-blank-file", lambda c: trec(c, b"\n  \n"), ValueError, r"run\.trec: the run file is empty"),
    Case("trec-inf-score", lambda c: trec(c, b"q1 Q0 d1 1 inf t\n"),
         ValueError, r"run\.trec:1: score 'inf' of qid 'q1' pid 'd1' is not a finite number"),
    Case("trec-1e400-score", lambda c: trec(c, b"q1 Q0 d1 1 0.5 t\nq1 Q0 d2 2 1e400 t\n"),
         ValueError, r"run\.trec:2: score '1e400' of qid 'q1' pid 'd2' is not a finite number"),
    Case("trec-minus-inf-score", lambda c: trec(c, b"q1 Q0 d1 1 -inf t\n"),
         ValueError, r"run\.trec:1: score '-inf'"),
    Case("trec-write-inf", lambda c: write_trec_run({"q": {"a": math.inf}}, c.tmp / "w.trec"),
         ValueError, r"score of qid 'q' pid 'a' is inf: not a finite number"),
    Case("trec-tag-whitespace", lambda c: check_trec_fields("my model"),
         ValueError, r"tag must be a non-empty string without whitespace, got 'my model'"),
    Case("trec-pid-whitespace", lambda c: check_trec_fields("t", ["q1"], ["d1", "d 2"]),
         ValueError, r"pid 'd 2' is empty or contains whitespace: a TREC run file cannot hold it"),
    Case("run-file-is-a-folder", lambda c: check_writable(c.tmp), IsADirectoryError, r"is a folder"),
    Case("run-file-under-a-file", lambda c: check_writable(a_file(c) / "run.trec"),
         NotADirectoryError, r"cannot write there: .*a-file is a file, not a folder"),
    # --- the cache folder and its JSON ----------------------------------------------------------
    Case("home-is-a-file", lambda c: home_at(c, a_file(c)), CacheError, r"RETRLAB_HOME=.*a-file is a file"),
    Case("home-missing-parent", lambda c: home_at(c, c.tmp / "typo" / "home"),
         CacheError, r"RETRLAB_HOME=.*typo/home: its parent .*typo is not an existing folder"),
    Case("home-under-a-file", lambda c: home_at(c, a_file(c) / "home"),
         CacheError, r"its parent .*a-file is not an existing folder"),
    Case("saved-data-empty-meta", lambda c: saved_data(c, "meta.json", ""),
         ValueError, r"meta\.json is not valid JSON: it is empty"),
    Case("saved-data-truncated-corpus", lambda c: saved_data(c, "corpus.json", '{"c1": {"title": "Ca'),
         ValueError, r"corpus\.json is not valid JSON: Unterminated string .* line 1"),
    Case("json-not-utf8", lambda c: (c.tmp / "x.json").write_bytes(b'{"a": "\xff"}') and load_json(c.tmp / "x.json"),
         ValueError, r"x\.json is not UTF-8 text"),
    # --- BEIR: a split judged only 0, a query in two splits, a download with no checksum --------
    Case("beir-grade0-split-bm25", lambda c: bm25_run(grade0_test_split(c), "test"),
         ValueError, r"split 'test' of beir\d+ has no query to evaluate"),
    Case("beir-grade0-split-dense", lambda c: dense_run(tiny_model(), grade0_test_split(c), "test"),
         ValueError, r"split 'test' of beir\d+ has no query to evaluate"),
    Case("beir-query-in-two-splits", lambda c: beir(c, dev=_tsv(["q1\td3\t1"])),
         DataFormatError, r"test\.tsv:3: query 'q1' is also judged in .*dev\.tsv: a query belongs to one split"),
    Case("beir-query-in-two-splits-grade0", lambda c: beir(c, dev=_tsv(["q3\td3\t1", "q2\td5\t0"])),
         DataFormatError, r"test\.tsv:2: query 'q2' is also judged in .*dev\.tsv"),
    Case("beir-download-unknown-md5", lambda c: download_beir("my-set", dest=c.tmp, base_url="http://127.0.0.1:9"),
         ChecksumError, r"no known md5 for BEIR dataset 'my-set': pass md5=.* or verify=False"),
    # --- cache names -------------------------------------------------------------------------
    Case("cache-name-escapes", lambda c: cached_dir("../outside", lambda f: None), ValueError, r"cache name must be"),
    Case("cache-name-absolute", lambda c: cached_dir("/tmp/x", lambda f: None), ValueError, r"cache name must be"),
]


@pytest.fixture
def ctx(toy_data, tmp_path, monkeypatch) -> SimpleNamespace:
    monkeypatch.setenv("RETRLAB_HOME", str(tmp_path / "home"))
    return SimpleNamespace(data=toy_data, tmp=tmp_path, pool=toy_pool(toy_data), setenv=monkeypatch.setenv)


def test_the_suite_is_large_and_its_ids_unique():
    assert len({c.id for c in CASES}) == len(CASES) >= 100


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input_gets_a_clear_error(case: Case, ctx) -> None:
    with pytest.raises(case.error, match=case.match):
        case.run(ctx)


def test_good_inputs_next_to_the_bad_ones_still_work(ctx) -> None:
    """The validations do not reject what is valid: the edge values just inside each range."""
    assert tiny_model().encode_passages([], progress=False).shape == (0, 32)  # nothing to encode: no error
    assert TrainConfig(steps=1, batch_size=1, warmup_ratio=1.0, weight_decay=0.0).steps == 1
    assert sample_without_replacement(np.array([0.0, 1.0]), 2, random.Random(0)) == [1, 0]
    assert uniform_from_pool(ctx.pool, 1, depth=None)("q0", random.Random(0))
    assert len(random_negatives(ctx.data, n=7)("q0", random.Random(0))) == 7  # 8 passages, 1 is its positive
    widget = explorer(ctx, settings=Settings(a=500, b=-0.5))
    widget.set(a=0.0, depth=8, n=0)
    assert widget.settings.a == 0.0 and widget.selected["top-k"] == []
    assert load_beir(write_beir(ctx.tmp / "ok")).name == "ok"


# --- killing a cache build midway ------------------------------------------------------------
SLOW_BUILD = """
import sys, time
from pathlib import Path
from retrlab.cache import cached_dir

def build(folder):
    (folder / "part1.txt").write_text("written before the kill")
    Path(sys.argv[1]).write_text("started")  # tell the test the build is under way
    time.sleep(120)
    (folder / "part2.txt").write_text("never written")

cached_dir("slow-thing", build)
"""


def _start_and_kill(script: str, args: list[str], home: Path, ready: Callable[[], bool]) -> None:
    """Run ``script`` with ``RETRLAB_HOME=home``, SIGKILL it once ``ready()`` holds."""
    env = {**os.environ, "RETRLAB_HOME": str(home), "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, "-c", script, *args], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 300
    while not ready():
        assert proc.poll() is None, f"the build ended before it could be killed: {proc.stderr.read()}"
        assert time.monotonic() < deadline, "the build never started"
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL


def test_a_killed_build_leaves_nothing_half_written_and_rebuilds(tmp_path, monkeypatch):
    home, marker = tmp_path / "home", tmp_path / "started"
    _start_and_kill(SLOW_BUILD, [str(marker)], home, marker.exists)
    # killed midway: its half-written folder exists only under a hidden temporary name
    assert not (home / "slow-thing").exists()
    leftovers = [p for p in home.iterdir() if p.name.startswith(".slow-thing.")]
    assert len(leftovers) == 1 and [f.name for f in leftovers[0].iterdir()] == ["part1.txt"]
    monkeypatch.setenv("RETRLAB_HOME", str(home))
    folder = cached_dir("slow-thing", lambda f: (f / "all.txt").write_text("complete"))
    assert sorted(p.name for p in folder.iterdir()) == ["all.txt", "retrlab-manifest.json"]
    assert [p.name for p in home.iterdir()] == ["slow-thing"]  # the dead build's folder is gone


def test_a_running_build_s_folder_is_kept(tmp_path, monkeypatch):
    monkeypatch.setenv("RETRLAB_HOME", str(tmp_path))
    running = tmp_path / f".thing.{os.getpid()}.abc.tmp"  # this very process: alive
    running.mkdir()
    cached_dir("thing", lambda f: None)
    assert running.is_dir()


KILL_WIKICAR = """
from retrlab.data.wikicar import load_wikicar
load_wikicar()
"""


@pytest.mark.slow
def test_a_killed_wikicar_build_rebuilds(tmp_path, monkeypatch):
    from retrlab.data.wikicar import load_wikicar

    home = tmp_path / "home"

    def building() -> bool:  # the build's temporary folder exists: it is under way
        return home.is_dir() and any(p.name.startswith(".wikicar-") for p in home.iterdir())

    _start_and_kill(KILL_WIKICAR, [], home, lambda: building() and time.sleep(1) is None)
    assert not any(p.name.startswith("wikicar-") for p in home.iterdir())
    monkeypatch.setenv("RETRLAB_HOME", str(home))
    data = load_wikicar()
    assert (len(data.qids("train")), len(data.qids("dev")), len(data.qids("test"))) == (1173, 131, 335)
    assert [p.name for p in home.iterdir()] == [next(home.glob("wikicar-*")).name]
    assert json.loads((next(home.glob("wikicar-*")) / "meta.json").read_text()) == {"name": "wiki-car"}
