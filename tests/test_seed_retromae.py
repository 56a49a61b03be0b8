"""SEED-Encoder and RetroMAE: attention masks, masking, decoder inputs, pretraining and its cache."""
from __future__ import annotations

import random

import pytest
import torch

from retrlab.pretraining import retromae, seed
from retrlab.pretraining.bench import PretrainConfig, TinyConfig, corpus_texts, new_mlm, train_wordpiece

TINY = TinyConfig(vocab_size=200, layers=1, hidden=16, heads=2, query_max_length=16, passage_max_length=24,
                  pooling="cls")


pytestmark = pytest.mark.usefixtures("one_thread")




@pytest.fixture
def tok(toy_data):
    return train_wordpiece(corpus_texts(toy_data), 200)


def official_seed_mask(length: int, window: int) -> torch.Tensor:
    """SEED's ``buffered_future_mask`` (transformer_sentence_encoder.py), as written there."""
    neg_inf = torch.full((length, length), float("-inf"))
    mask = torch.triu(neg_inf, 1) + torch.triu(neg_inf, window).transpose(0, 1)
    mask[:, 0] = 0
    return mask


# --- SEED: the windowed causal mask ----------------------------------------------------------------
def test_window_causal_mask_exact():
    expected = torch.tensor([[1, 0, 0, 0, 0],
                             [1, 1, 0, 0, 0],
                             [1, 1, 1, 0, 0],
                             [1, 0, 1, 1, 0],
                             [1, 0, 0, 1, 1]], dtype=torch.bool)
    assert torch.equal(seed.window_causal_mask(5, 2), expected)
    assert torch.equal(seed.window_causal_mask(4, None), torch.tril(torch.ones(4, 4, dtype=torch.bool)))
    only_self = seed.window_causal_mask(4, 1)  # itself and position 0
    assert only_self.sum(1).tolist() == [1, 2, 2, 2] and only_self.diagonal().all()


@pytest.mark.parametrize("window", [1, 2, 3, 8])
def test_window_causal_mask_equals_the_official_future_mask(window):
    assert torch.equal(seed.window_causal_mask(9, window), official_seed_mask(9, window) == 0)


def test_window_causal_mask_rejects_bad_input():
    with pytest.raises(ValueError, match="length"):
        seed.window_causal_mask(0, 2)
    with pytest.raises(ValueError, match="window"):
        seed.window_causal_mask(4, 0)


def test_shift_for_lm_exact():
    ids = torch.tensor([[2, 10, 11, 3], [2, 12, 3, 0]])
    mask = torch.tensor([[1, 1, 1, 1], [1, 1, 1, 0]])
    inputs, labels = seed.shift_for_lm(ids, mask)
    assert inputs.tolist() == [[2, 10, 11], [2, 12, 3]]
    assert labels.tolist() == [[10, 11, 3], [12, 3, -100]]
    with pytest.raises(ValueError, match="T >= 2"):
        seed.shift_for_lm(ids[:, :1], mask[:, :1])
    with pytest.raises(ValueError, match="one shape"):
        seed.shift_for_lm(ids, mask[:, :3])


def test_seed_decoder_sees_cls_and_only_its_window():
    torch.manual_seed(0)
    decoder = seed.SeedDecoder(hidden=16, heads=2, layers=1, window=2).eval()
    cls, states = torch.randn(1, 16), torch.randn(1, 7, 16)
    padding = torch.zeros(1, 7, dtype=torch.bool)
    base = decoder(cls, states, padding)
    assert base.shape == (1, 7, 16)

    def changed_at(position: int) -> torch.Tensor:  # which outputs move when one input moves
        moved = states.clone()
        moved[0, position] += 1.0
        return (decoder(cls, moved, padding) - base).abs().amax(-1)[0] > 1e-6

    assert changed_at(3).tolist() == [False, False, False, True, True, False, False]  # rows 3 and 4
    assert changed_at(0).all()  # position 0 is always visible
    assert ((decoder(cls + 1.0, states, padding) - base).abs().amax(-1) > 1e-6).all()  # [CLS] reaches all
    strong = seed.SeedDecoder(16, 2, 1, window=None).eval()
    strong.load_state_dict(decoder.state_dict())
    moved = states.clone()
    moved[0, 3] += 1.0
    assert ((strong(cls, moved, padding) - strong(cls, states, padding)).abs().amax(-1)[0, 3:] > 1e-6).all()
    with pytest.raises(ValueError, match="cls"):
        decoder(cls.unsqueeze(0), states, padding)
    with pytest.raises(ValueError, match="one layer"):
        seed.SeedDecoder(16, 2, 0, 2)


def perturb_tokens_after_cls(mlm):
    """A hook that adds noise to every encoder output except [CLS]."""
    def hook(module, args, output):
        output.last_hidden_state[:, 1:] += torch.randn_like(output.last_hidden_state[:, 1:])
        return output
    return mlm.bert.register_forward_hook(hook)


def distinct_cls(mlm):
    """A hook that gives each text of a batch its own, very different [CLS] vector."""
    def hook(module, args, output):
        cls = torch.randn(output.last_hidden_state[:, 0].shape, generator=torch.Generator().manual_seed(0))
        output.last_hidden_state[:, 0] = 3 * cls
        return output
    return mlm.bert.register_forward_hook(hook)


def test_seed_step_uses_only_cls_from_the_encoder(toy_data, tok):
    texts = corpus_texts(toy_data)[:4]
    config = seed.SeedConfig(decoder_layers=1, window=2)
    mlm = new_mlm(tok, TINY).eval()
    decoder = seed.new_decoder(config, TINY).eval()
    torch.manual_seed(1)
    _, clean = seed.seed_step_loss(mlm, decoder, tok, texts, config, 24)
    handle = perturb_tokens_after_cls(mlm)
    torch.manual_seed(1)  # the same MLM masks
    _, noisy = seed.seed_step_loss(mlm, decoder, tok, texts, config, 24)
    handle.remove()
    assert noisy["decoder"] == pytest.approx(clean["decoder"], abs=1e-6)  # the decoder never saw them
    assert abs(noisy["mlm"] - clean["mlm"]) > 1e-4  # the encoder's MLM head did


def test_lm_head_loss_needs_a_label(tok):
    mlm = new_mlm(tok, TINY)
    with pytest.raises(ValueError, match="no labelled"):
        seed.lm_head_loss(mlm, torch.zeros(1, 3, 16), torch.full((1, 3), -100))


def test_pretrain_seed_is_seeded_and_keeps_its_decoder(toy_data, tok):
    texts = corpus_texts(toy_data)
    config, pretrain_config = seed.SeedConfig(window=2), PretrainConfig(steps=3, batch_size=4)
    a = seed.pretrain_seed(tok, texts, pretrain_config, config, TINY, progress=False)
    b = seed.pretrain_seed(tok, texts, pretrain_config, config, TINY, progress=False)
    assert [r["loss"] for r in a.history.rows] == [r["loss"] for r in b.history.rows]
    assert {"mlm", "decoder"} <= set(a.history.rows[-1])
    decoder = seed.decoder_from(a, config, TINY)
    assert not decoder.training and torch.equal(decoder.layers[0].linear1.weight,
                                                a.state["decoder.layers.0.linear1.weight"])
    handle = distinct_cls(a.mlm)  # an untrained encoder gives every text nearly the same [CLS]
    own = seed.reconstruction_loss(a.mlm, decoder, tok, texts, 24)
    assert own == pytest.approx(seed.reconstruction_loss(a.mlm, decoder, tok, texts, 24))
    shuffled = seed.reconstruction_loss(a.mlm, decoder, tok, texts, 24, shuffle_cls=True)
    assert own != pytest.approx(shuffled, abs=1e-4)
    one = texts[:1]  # one text: rolling its [CLS] hands it back to itself
    assert seed.reconstruction_loss(a.mlm, decoder, tok, one, 24, shuffle_cls=True) == pytest.approx(
        seed.reconstruction_loss(a.mlm, decoder, tok, one, 24))
    handle.remove()
    with pytest.raises(ValueError, match="no decoder"):
        seed.decoder_from(type(a)(a.mlm, a.history, {}), config, TINY)


def test_cached_seed_builds_once_per_decoder(home, toy_data, tok):
    texts = corpus_texts(toy_data)
    weak = seed.SeedConfig(decoder_layers=1, window=2)
    first = seed.cached_seed(tok, texts, 2, config=weak, tiny=TINY, batch_size=4, progress=False)
    again = seed.cached_seed(tok, texts, 2, config=weak, tiny=TINY, batch_size=4, progress=False)
    embeddings = first.mlm.bert.embeddings.word_embeddings.weight
    assert torch.equal(embeddings, again.mlm.bert.embeddings.word_embeddings.weight)
    assert set(first.state) == set(again.state) and any(k.startswith("decoder.") for k in first.state)
    strong = seed.SeedConfig(decoder_layers=1, window=None)
    seed.cached_seed(tok, texts, 2, config=strong, tiny=TINY, batch_size=4, progress=False)
    names = sorted(p.name for p in (home / "pretraining").iterdir() if "seed" in p.name)
    assert len(names) == 2 and "seed-l1-w2-b4" in names[1 if "wfull" in names[0] else 0]


# --- RetroMAE: whole-word masks -----------------------------------------------------------------
def test_word_groups_join_pieces_and_skip_specials():
    tokens = ["[CLS]", "the", "cat", "##s", "sat", "##s", "[SEP]", "[PAD]"]
    assert retromae.word_groups(tokens) == [[1], [2, 3], [4, 5]]


def test_whole_word_mask_rate_words_and_seed():
    tokens = ["[CLS]"] + [f"w{i}" for i in range(18)] + ["[SEP]"]  # 20 tokens, 18 single-piece words
    mask = retromae.whole_word_mask(tokens, 0.3, random.Random(0))
    assert sum(mask) == 6 and mask[0] == mask[-1] == 0  # round(0.3 * 20); [CLS]/[SEP] never
    assert mask == retromae.whole_word_mask(tokens, 0.3, random.Random(0))
    assert mask != retromae.whole_word_mask(tokens, 0.3, random.Random(1))
    pieces = ["[CLS]", "a", "##b", "##c", "d", "e", "##f", "[SEP]"]  # words of 3, 1 and 2 pieces
    for s in range(20):
        m = retromae.whole_word_mask(pieces, 0.4, random.Random(s))  # target round(3.2) = 3
        assert m[1] == m[2] == m[3] and m[5] == m[6]  # whole words only
        assert sum(m) == 3
    at_least_one = retromae.whole_word_mask(["[CLS]", "a", "[SEP]"], 0.01, random.Random(0))
    assert at_least_one == [0, 1, 0]
    with pytest.raises(ValueError, match="rate"):
        retromae.whole_word_mask(tokens, 1.0, random.Random(0))


def test_position_specific_mask_rows():
    tokens = ["[CLS]"] + [f"w{i}" for i in range(10)] + ["[SEP]"]  # 12 tokens: 6 hidden per draw at 50%
    visible = retromae.position_specific_mask(tokens, 0.5, random.Random(0))
    assert visible.shape == (12, 12) and visible.dtype == torch.bool
    assert not visible.diagonal().any()  # a row never sees its own token
    assert visible[1:, 0].all() and visible[:-1, -1].all()  # [CLS] and [SEP] are never masked
    hidden = (~visible).sum(1)  # a draw hides round(0.5 * 12) = 6, plus the row's own position
    assert all(h in (6, 7) for h in hidden.tolist())
    assert hidden[0] == 7 and hidden[-1] == 7  # [CLS]/[SEP] rows: the draw's 6 + themselves
    assert len({tuple(r) for r in visible.tolist()}) > 6  # rows draw different masks
    assert torch.equal(visible, retromae.position_specific_mask(tokens, 0.5, random.Random(0)))
    assert not torch.equal(visible, retromae.position_specific_mask(tokens, 0.5, random.Random(1)))
    pool_of_one = retromae.position_specific_mask(tokens, 0.5, random.Random(0), pool_size=1)
    off_diagonal = ~torch.eye(12, dtype=torch.bool)
    same = (pool_of_one == pool_of_one[1]) | ~off_diagonal | ~off_diagonal[1]  # one draw, own position apart
    assert same.all()
    with pytest.raises(ValueError, match="empty"):
        retromae.position_specific_mask([], 0.5, random.Random(0))


def test_corrupt_is_bert_80_10_10_on_the_mask_only(tok):
    ids = torch.randint(5, len(tok), (200, 500), generator=torch.Generator().manual_seed(0))
    mask = torch.rand(ids.shape, generator=torch.Generator().manual_seed(1)) < 0.3
    inputs, labels = retromae.corrupt(ids, mask, tok, torch.Generator().manual_seed(2))
    assert torch.equal(labels[mask], ids[mask]) and (labels[~mask] == -100).all()
    assert torch.equal(inputs[~mask], ids[~mask])
    masked = (inputs[mask] == tok.mask_token_id).float().mean().item()
    kept = (inputs[mask] == ids[mask]).float().mean().item()
    assert masked == pytest.approx(0.8, abs=0.01) and kept == pytest.approx(0.1 + 0.1 / len(tok), abs=0.01)
    with pytest.raises(ValueError, match="shape"):
        retromae.corrupt(ids, mask[:, :3], tok, torch.Generator())


def test_retromae_batch_inputs_labels_and_masks(tok, toy_data):
    texts = corpus_texts(toy_data)[:3]
    batch = retromae.retromae_batch(tok, texts, retromae.RetroMAEConfig(), 24, random.Random(0))
    encoded = tok(texts, truncation=True, max_length=24)["input_ids"]
    size, length = len(texts), max(map(len, encoded))
    assert batch.decoder_visible.shape == (size, length, length)
    for row, ids in enumerate(encoded):
        n = len(ids)
        assert batch.decoder_input_ids[row, :n].tolist() == ids  # the decoder reads the unmasked text
        assert batch.decoder_labels[row].tolist() == [-100] + ids[1:-1] + [-100] * (length - n + 1)
        assert (batch.encoder_labels[row] != -100).sum() <= round(0.3 * n)
        assert (batch.encoder_labels[row] != -100).sum() >= round(0.3 * n) - 3  # whole words may leave a gap
        assert not batch.decoder_visible[row, n:].any() and not batch.decoder_visible[row, :, n:].any()
        assert batch.decoder_visible[row, 1:n, 0].all()
    changed = batch.encoder_input_ids != batch.decoder_input_ids
    assert (batch.encoder_labels[changed] != -100).all()  # only masked positions are corrupted
    again = retromae.retromae_batch(tok, texts, retromae.RetroMAEConfig(), 24, random.Random(0))
    assert all(torch.equal(a, b) for a, b in zip(vars(batch).values(), vars(again).values()))
    with pytest.raises(ValueError, match="no texts"):
        retromae.retromae_batch(tok, [], retromae.RetroMAEConfig(), 24, random.Random(0))


# --- RetroMAE: the enhanced decoder --------------------------------------------------------------
def test_enhanced_streams_take_only_cls_from_the_encoder(tok):
    mlm = new_mlm(tok, TINY).eval()
    ids = torch.tensor([[2, 40, 41, 3]])
    cls = torch.randn(1, 16)
    query, content = retromae.enhanced_streams(cls, ids, mlm.bert.embeddings)
    positions = mlm.bert.embeddings.position_embeddings.weight[:4]
    assert torch.allclose(query, cls.unsqueeze(1) + positions.unsqueeze(0))  # H1 = h_X + p_i
    assert torch.equal(content[:, 0], cls)  # H2 starts with h_X
    assert torch.allclose(content[:, 1:], mlm.bert.embeddings(input_ids=ids)[:, 1:])
    with pytest.raises(ValueError, match="cls"):
        retromae.enhanced_streams(cls[0], ids, mlm.bert.embeddings)


def test_two_stream_layer_reads_only_visible_positions(tok):
    mlm = new_mlm(tok, TINY)
    torch.manual_seed(0)
    layer = retromae.TwoStreamLayer(mlm.config).eval()
    query, content = torch.randn(1, 5, 16), torch.randn(1, 5, 16)
    visible = torch.tensor([[[1, 0, 0, 0, 0], [1, 0, 1, 0, 0], [1, 1, 0, 1, 0],
                             [1, 0, 0, 0, 1], [1, 1, 1, 1, 0]]], dtype=torch.bool)
    base = layer(query, content, visible)
    moved = content.clone()
    moved[0, 2] += 1.0
    changed = (layer(query, moved, visible) - base).abs().amax(-1)[0] > 1e-6
    assert changed.tolist() == visible[0, :, 2].tolist() == [False, True, False, False, True]
    nothing = torch.zeros_like(visible)  # a padding row that sees nothing stays finite
    assert torch.isfinite(layer(query, content, nothing)).all()


def test_retromae_step_uses_only_cls_from_the_encoder(toy_data, tok):
    texts = corpus_texts(toy_data)[:4]
    mlm = new_mlm(tok, TINY).eval()
    decoder = retromae.new_decoder(mlm, retromae.RetroMAEConfig()).eval()
    batch = retromae.retromae_batch(tok, texts, retromae.RetroMAEConfig(), 24, random.Random(0))
    _, clean = retromae.retromae_step_loss(mlm, decoder, batch)
    handle = perturb_tokens_after_cls(mlm)
    _, noisy = retromae.retromae_step_loss(mlm, decoder, batch)
    handle.remove()
    assert noisy["decoder"] == pytest.approx(clean["decoder"], abs=1e-6)
    assert abs(noisy["mlm"] - clean["mlm"]) > 1e-4


def test_pretrain_retromae_is_seeded_cached_and_keeps_its_decoder(home, toy_data, tok):
    texts = corpus_texts(toy_data)
    config = retromae.RetroMAEConfig(decoder_layers=2)
    budget = PretrainConfig(steps=3, batch_size=4)
    a = retromae.pretrain_retromae(tok, texts, budget, config, TINY, progress=False)
    b = retromae.pretrain_retromae(tok, texts, budget, config, TINY, progress=False)
    assert [r["loss"] for r in a.history.rows] == [r["loss"] for r in b.history.rows]
    decoder = retromae.decoder_from(a, config)
    assert len(decoder.layers) == 2 and not decoder.training
    handle = distinct_cls(a.mlm)
    own = retromae.reconstruction_loss(a.mlm, decoder, tok, texts, config, 24)
    assert own == pytest.approx(retromae.reconstruction_loss(a.mlm, decoder, tok, texts, config, 24))
    shuffled = retromae.reconstruction_loss(a.mlm, decoder, tok, texts, config, 24, shuffle_cls=True)
    assert own != pytest.approx(shuffled, abs=1e-4)
    one = texts[:1]  # one text: rolling its [CLS] hands it back to itself
    alone = retromae.reconstruction_loss(a.mlm, decoder, tok, one, config, 24)
    assert retromae.reconstruction_loss(a.mlm, decoder, tok, one, config, 24, shuffle_cls=True) == pytest.approx(alone)
    handle.remove()
    with pytest.raises(ValueError, match="no decoder"):
        retromae.decoder_from(type(a)(a.mlm, a.history, {}), config)
    first = retromae.cached_retromae(tok, texts, 2, tiny=TINY, batch_size=4, progress=False)
    again = retromae.cached_retromae(tok, texts, 2, tiny=TINY, batch_size=4, progress=False)
    key = "decoder.layers.0.query.weight"
    assert torch.equal(first.state[key], again.state[key])
    assert [p.name for p in (home / "pretraining").iterdir() if "retromae" in p.name][0].count("d0.5-l1") == 1
