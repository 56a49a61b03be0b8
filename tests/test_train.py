import numpy as np
import pytest

from retrlab.encoders import BiEncoder
from retrlab.train import Batch, History, Hook, TrainConfig, known_positive_mask, query_batches, train


def test_batches_are_seeded_and_use_labelled_positives(toy_data):
    a = query_batches(toy_data, 2, seed=3)
    b = query_batches(toy_data, 2, seed=3)
    for _ in range(5):
        x, y = next(a), next(b)
        assert x == y
        assert all(p in toy_data.positives[q] for q, p in zip(x.qids, x.positive_pids))
        assert set(x.qids) <= set(toy_data.qids("train"))


def test_batch_size_larger_than_training_set(toy_data):
    with pytest.raises(ValueError, match="batch_size 9"):
        next(query_batches(toy_data, 9, seed=0))


def test_known_positive_mask_uses_labels_only(toy_data):
    batch = Batch(["q0", "q1"], ["a", "b"], ["c1", "c4"], [[], []])
    # c2 is relevant to q0 but unlabelled: it must stay a negative (the trainer cannot know)
    mask = known_positive_mask(toy_data, batch, ["c1", "c4", "c2"])
    assert mask.tolist() == [[True, False, False], [False, True, False]]


def test_hooks_fire_on_schedule_and_at_the_end():
    hook = Hook(every=3, fn=lambda step, model: None)
    assert [s for s in range(1, 8) if hook.due(s, 7)] == [3, 6, 7]


def test_history_merges_values_logged_at_one_step():
    h = History()
    h.log(1, loss=2.0)
    h.log(1, mrr=0.5)
    h.log(2, loss=1.0)
    assert h.rows == [{"step": 1, "loss": 2.0, "mrr": 0.5}, {"step": 2, "loss": 1.0}]
    assert h.series("mrr") == ([1], [0.5]) and h.last("loss") == 1.0


def _tiny_run(toy_data, seed):
    model = BiEncoder.tiny(layers=1, hidden=32, heads=2, seed=0, passage_max_length=32)
    hard = lambda qid, rng: [rng.choice([p for p in toy_data.search_pids("train")
                                         if p not in toy_data.qrels[qid]])]
    calls = []
    hook = Hook(2, lambda step, m: calls.append(step) or {"probe": float(step)})
    config = TrainConfig(steps=4, batch_size=2, lr=1e-3, tau=1.0, seed=seed)
    history = train(model, toy_data, config, strategy=hard, hooks=[hook], progress=False)
    return model, history, calls


def test_training_lowers_the_loss_and_is_reproducible(toy_data):
    model_a, hist_a, calls = _tiny_run(toy_data, seed=0)
    model_b, hist_b, _ = _tiny_run(toy_data, seed=0)
    _, hist_c, _ = _tiny_run(toy_data, seed=1)
    assert calls == [2, 4]
    assert hist_a.series("loss") == hist_b.series("loss")
    assert hist_a.series("loss") != hist_c.series("loss")
    np.testing.assert_array_equal(model_a.encode_queries(["cats"]), model_b.encode_queries(["cats"]))
    assert hist_a.series("probe") == ([2, 4], [2.0, 4.0])


def test_fine_tuning_minilm_improves_the_toy_ranking(toy_data, minilm):
    from retrlab.evaluation import evaluate_model
    before = evaluate_model(minilm, toy_data, "train", ["MRR@10"])["MRR@10"]
    config = TrainConfig(steps=6, batch_size=4, lr=5e-5, tau=0.05, warmup_ratio=0.0)
    train(minilm, toy_data, config, progress=False)
    after = evaluate_model(minilm, toy_data, "train", ["MRR@10"])["MRR@10"]
    assert after >= before


def test_an_interrupted_run_resumes_exactly(toy_data, tmp_path):
    def run(steps_before_crash=None):
        model = BiEncoder.tiny(layers=1, hidden=32, heads=2, seed=0, passage_max_length=32)
        config = TrainConfig(steps=6, batch_size=2, lr=1e-3, tau=1.0, seed=0)
        hooks = []
        if steps_before_crash:
            def crash(step, m):
                raise KeyboardInterrupt
            hooks = [Hook(steps_before_crash, crash)]
        return model, train(model, toy_data, config, hooks=hooks, progress=False,
                            checkpoint=tmp_path / "ckpt.pt", checkpoint_every=2)

    reference_model, reference = run()
    (tmp_path / "ckpt.pt").unlink()
    with pytest.raises(KeyboardInterrupt):
        run(steps_before_crash=5)  # dies after step 5's update, before its checkpoint: step 4 is saved
    resumed_model, resumed = run()
    assert resumed.series("loss") == reference.series("loss")
    np.testing.assert_array_equal(resumed_model.encode_queries(["cats"]), reference_model.encode_queries(["cats"]))
