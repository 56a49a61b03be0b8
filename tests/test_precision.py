"""The precision policy: parsing, hardware detection, and what bf16 does to embeddings and scores."""
import pytest
import torch

from retrlab import precision


def test_policy_defaults_to_auto_and_names_bad_values(monkeypatch):
    monkeypatch.delenv("RETRLAB_PRECISION", raising=False)
    assert precision.requested_precision() == "auto"
    monkeypatch.setenv("RETRLAB_PRECISION", " BF16 ")
    assert precision.requested_precision() == "bf16"
    monkeypatch.setenv("RETRLAB_PRECISION", "fp16")
    with pytest.raises(ValueError, match="RETRLAB_PRECISION must be one of"):
        precision.requested_precision()


def test_cpu_flags_decide_native_bf16(tmp_path):
    with_bf16, without = tmp_path / "a", tmp_path / "b"
    with_bf16.write_text("flags\t: fpu sse avx2 avx512f avx512_bf16\n")
    without.write_text("flags\t: fpu sse avx2\n")
    assert precision.cpu_has_native_bf16(str(with_bf16))
    assert not precision.cpu_has_native_bf16(str(without))


def test_auto_follows_the_hardware_and_explicit_values_win(monkeypatch):
    monkeypatch.setattr(precision, "native_bf16", lambda device: False)
    monkeypatch.setenv("RETRLAB_PRECISION", "auto")
    assert precision.forward_precision("cpu") == "fp32"
    assert isinstance(precision.autocast("cpu"), type(precision.contextlib.nullcontext()))
    monkeypatch.setattr(precision, "native_bf16", lambda device: True)
    assert precision.forward_precision("cpu") == "bf16"
    monkeypatch.setenv("RETRLAB_PRECISION", "fp32")
    assert precision.forward_precision("cpu") == "fp32"


def test_bf16_autocast_rounds_scores_that_fp32_keeps(monkeypatch):
    """Two cosines 0.001 apart collapse to one bf16 value: why scores must be computed in float32."""
    monkeypatch.setenv("RETRLAB_PRECISION", "bf16")
    q = torch.tensor([[1.0, 0.0]])
    p = torch.tensor([[0.7000, 0.7141], [0.7010, 0.7132]])
    with precision.autocast("cpu"):
        rounded = q @ p.T
    assert rounded.dtype == torch.bfloat16 and rounded[0, 0] == rounded[0, 1]
    exact = q.float() @ p.float().T
    assert exact[0, 1] - exact[0, 0] == pytest.approx(0.001, abs=1e-6)


def test_auto_trains_in_bf16_on_native_cpus_only_and_encodes_in_it_wherever_native(monkeypatch):
    monkeypatch.setenv("RETRLAB_PRECISION", "auto")
    monkeypatch.setattr(precision, "native_bf16", lambda device: True)
    assert precision.forward_precision("cpu", training=False) == "bf16"
    assert precision.forward_precision("cpu", training=True) == "bf16"  # 1.5x a step, same results
    assert precision.forward_precision("cuda", training=False) == "bf16"
    assert precision.forward_precision("cuda", training=True) == "fp32"  # slower per step at MiniLM's sizes
    monkeypatch.setattr(precision, "native_bf16", lambda device: False)
    assert precision.forward_precision("cpu", training=True) == "fp32"  # emulated bf16: slower, never chosen
    monkeypatch.setenv("RETRLAB_PRECISION", "bf16")
    assert precision.forward_precision("cuda", training=True) == "bf16"
    monkeypatch.setenv("RETRLAB_PRECISION", "fp32")
    monkeypatch.setattr(precision, "native_bf16", lambda device: True)
    assert precision.forward_precision("cpu", training=True) == "fp32"


def test_bf16_encoding_is_within_cosine_0_9999_of_fp32_and_vectors_stay_float32(monkeypatch):
    """The equivalence the policy rests on: all-MiniLM-L6-v2 embeddings under bf16 autocast."""
    from retrlab.data import load_wikicar
    from retrlab.encoders import BiEncoder

    texts = load_wikicar().passage_texts()[:8]
    model = BiEncoder.minilm(passage_max_length=64)
    monkeypatch.setenv("RETRLAB_PRECISION", "fp32")
    fp32 = model.encode_passages(texts, progress=False)
    monkeypatch.setenv("RETRLAB_PRECISION", "bf16")
    bf16 = model.encode_passages(texts, progress=False)
    with torch.no_grad():
        trained = model.embed_passages(texts[:2])
    assert bf16.dtype == fp32.dtype == trained.numpy().dtype  # float32 out, whatever ran inside
    cosines = (fp32 * bf16).sum(1) / (abs(fp32 ** 2).sum(1) ** 0.5 * (bf16 ** 2).sum(1) ** 0.5)
    assert cosines.min() >= 0.9999
    assert abs(fp32 - bf16).max() > 0  # bf16 really ran: the vectors are not bit-identical


def test_a_float64_model_keeps_float64_vectors():
    """The cast after the forward pass only widens (bf16 -> fp32); a double model stays double."""
    from retrlab.encoders import BiEncoder

    model = BiEncoder.tiny().double()
    with torch.no_grad():
        assert model.embed_passages(["a short passage"]).dtype == torch.float64


def test_the_cross_encoder_follows_the_policy_with_float32_logits(monkeypatch):
    """Segment-cosine logits under bf16 stay within 0.05 of float32's (benchmarks/bf16_cross_encoder.py:
    0.013 at most on 400 trained pairs); the classifier head, whose logit a bf16 linear layer would
    round, does not change at all."""
    from retrlab.data import load_wikicar
    from retrlab.encoders import CrossEncoder

    data = load_wikicar()
    queries = [data.queries[q] for q in data.qids("dev")[:4]]
    passages = data.passage_texts()[:4]
    cosine_head, classifier = CrossEncoder.minilm(max_length=64), CrossEncoder.minilm(max_length=64, head="classifier")
    logits = {}
    for policy in ("fp32", "bf16"):
        monkeypatch.setenv("RETRLAB_PRECISION", policy)
        with torch.no_grad():
            logits[policy] = [cosine_head(queries, passages), classifier(queries, passages)]
    (cos32, cls32), (cos16, cls16) = logits["fp32"], logits["bf16"]
    assert cos16.dtype == cls16.dtype == torch.float32
    assert 0 < (cos16 - cos32).abs().max() < 0.05  # bf16 really ran, and barely moved the logits
    assert torch.equal(cls16, cls32)
