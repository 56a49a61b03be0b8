import numpy as np
import pytest
import torch
from sentence_transformers import SentenceTransformer

from retrlab import encoders
from retrlab.encoders import BiEncoder, forget_token_ids, length_sorted_batches, minilm_path, pool, token_ids

TEXTS = ["hello world", "Anarchism: a political philosophy and movement " * 12,
         "Cats sleep a lot.", "A", "The quick brown fox jumps over the lazy dog."]


def test_mean_pooling_ignores_padding():
    hidden = torch.tensor([[[1.0, 2.0], [3.0, 4.0], [100.0, 100.0]]])
    mask = torch.tensor([[1, 1, 0]])
    assert pool(hidden, mask, "mean").tolist() == [[2.0, 3.0]]
    assert pool(hidden, mask, "cls").tolist() == [[1.0, 2.0]]
    with pytest.raises(ValueError, match="pooling"):
        pool(hidden, mask, "max")


def test_length_sorted_batches_cover_every_index_once():
    batches = length_sorted_batches([3, 9, 1, 7, 5], batch_size=2)
    assert batches == [[1, 3], [4, 0], [2]]


def test_token_ids_are_the_tokenizers_own_and_remember_only_the_last_calls(_minilm, monkeypatch):
    tok = _minilm.tokenizer
    cut = token_ids(tok, TEXTS, 8)
    assert cut == tok(TEXTS, truncation=True, max_length=8)["input_ids"] and max(map(len, cut)) == 8
    uncut = token_ids(tok, TEXTS)
    assert uncut == tok(TEXTS)["input_ids"] and len(uncut[1]) == 110  # 12 x 9 tokens, [CLS] and [SEP]
    assert token_ids(tok, TEXTS, special_tokens=False) == tok(TEXTS, add_special_tokens=False)["input_ids"]
    calls = []
    monkeypatch.setattr(type(tok), "__call__", lambda self, *a, **k: calls.append(a) or {"input_ids": [[0]]})
    assert token_ids(tok, list(TEXTS), 8) is cut and not calls  # the same call again: remembered, not re-run
    for n in range(1, encoders.TOKEN_IDS_KEPT + 1):  # newer calls push the oldest out
        token_ids(tok, TEXTS[:n], 8)
    assert len(calls) == encoders.TOKEN_IDS_KEPT
    token_ids(tok, TEXTS, 8)
    assert len(calls) == encoders.TOKEN_IDS_KEPT + 1
    monkeypatch.setattr(encoders, "TOKEN_IDS_MAX_TEXTS", 2)  # a call over the limit is never remembered
    token_ids(tok, TEXTS[:3], 8), token_ids(tok, TEXTS[:3], 8)
    assert len(calls) == encoders.TOKEN_IDS_KEPT + 3
    token_ids(tok, TEXTS[:2], 8)  # remembered ...
    forget_token_ids()  # ... until forgotten (the encode benchmark times the tokenizer too)
    token_ids(tok, TEXTS[:2], 8)
    assert len(calls) == encoders.TOKEN_IDS_KEPT + 4


@pytest.mark.parametrize("max_length", [128, 16])
def test_minilm_equals_sentence_transformers(_minilm, max_length, float32):
    st = SentenceTransformer(minilm_path(), device="cpu")
    st.max_seq_length = max_length
    _minilm.passage_max_length = max_length
    ours = _minilm.encode_passages(TEXTS, batch_size=2, progress=False)
    _minilm.passage_max_length = 128
    reference = st.encode(TEXTS, convert_to_numpy=True, batch_size=2)
    assert ours.dtype == np.float32 and ours.shape == (5, 384)
    np.testing.assert_allclose(ours, reference, atol=1e-5)


def test_encode_matches_differentiable_embed(_minilm):
    fast = _minilm.encode_queries(TEXTS)
    with torch.no_grad():
        slow = _minilm.embed_queries(TEXTS).numpy()
    np.testing.assert_allclose(fast, slow, atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(fast, axis=1), 1.0, atol=1e-5)


def test_encode_rejects_a_single_string(_minilm):
    with pytest.raises(TypeError, match="list of texts"):
        _minilm.encode_passages("not a list", progress=False)


def test_separate_towers_are_independent_copies(_minilm):
    model = BiEncoder(_minilm.query_model, _minilm.tokenizer, shared=False)
    assert model.passage_model is not model.query_model
    with torch.no_grad():
        next(model.passage_model.parameters()).add_(1.0)
    q = model.encode_queries(["cats"])
    p = model.encode_passages(["cats"], progress=False)
    assert not np.allclose(q, p)


def test_save_and_load_round_trip(tmp_path):
    model = BiEncoder.tiny(layers=1, hidden=32, heads=2, shared=False, passage_max_length=64)
    before = model.encode_passages(TEXTS, progress=False)
    model.save_pretrained(tmp_path / "m")
    loaded = BiEncoder.from_pretrained(tmp_path / "m")
    assert loaded.settings() == model.settings()
    np.testing.assert_allclose(loaded.encode_passages(TEXTS, progress=False), before, atol=1e-6)


def test_tiny_preset_is_small_and_seeded():
    a, b = BiEncoder.tiny(seed=1), BiEncoder.tiny(seed=1)
    assert a.dim == 128 and a.pooling == "cls" and not a.normalize
    np.testing.assert_array_equal(a.encode_queries(["x y"]), b.encode_queries(["x y"]))
    assert sum(p.numel() for p in a.parameters()) < 6_000_000


def test_missing_model_path_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        BiEncoder.from_pretrained(str(tmp_path / "nope"))
