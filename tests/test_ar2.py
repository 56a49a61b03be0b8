"""AR2's losses (exact values on tiny inputs) and its alternating loop on toy data."""
from __future__ import annotations

import dataclasses
import math
import random

import numpy as np
import pytest
import torch

from tests.helpers import make_tiny_cross_encoder
from retrlab.encoders import BiEncoder, CrossEncoder
from retrlab.losses import ar2_adversarial_loss, ar2_retriever_loss, ar2_rewards, kl_distillation_loss
from retrlab.methods.ar2 import AR2Config, candidate_universe, refresh_pool, sample_groups, sharpness, train_ar2


def test_kl_distillation_exact_value_and_kl_identity():
    student = torch.tensor([[0.0, math.log(3.0)]], requires_grad=True)  # p_student = [1/4, 3/4]
    teacher = torch.tensor([[0.0, 0.0]])  # p_teacher = [1/2, 1/2]
    loss = kl_distillation_loss(student, teacher)
    assert loss.item() == pytest.approx(-(0.5 * math.log(0.25) + 0.5 * math.log(0.75)), abs=1e-6)
    # cross-entropy = KL(teacher || student) + H(teacher)
    kl = 0.5 * math.log(0.5 / 0.25) + 0.5 * math.log(0.5 / 0.75)
    assert loss.item() == pytest.approx(kl + math.log(2), abs=1e-6)
    loss.backward()
    assert student.grad[0].tolist() == pytest.approx([0.25 - 0.5, 0.75 - 0.5], abs=1e-6)  # p_student - p_teacher
    # a teacher temperature flattens the teacher: T -> inf gives the uniform teacher
    sharp = torch.tensor([[4.0, 0.0]])
    assert kl_distillation_loss(student, sharp, teacher_tau=1e6).item() == pytest.approx(loss.item(), abs=1e-5)
    with pytest.raises(ValueError, match="same shape"):
        kl_distillation_loss(student, torch.zeros(1, 3))


def test_rewards_are_the_rankers_pairwise_log_probabilities():
    ranker = torch.tensor([[2.0, 2.0, 0.0, 5.0]])
    expected = [math.log(0.5), math.log(0.5), math.log(1 / (1 + math.exp(-2))), math.log(1 / (1 + math.exp(3)))]
    assert ar2_rewards(ranker)[0].tolist() == pytest.approx(expected, abs=1e-6)
    assert (ar2_rewards(torch.randn(3, 5)) <= 0).all()


def test_adversarial_loss_exact_value_and_gradient_direction():
    retriever = torch.zeros(1, 3, requires_grad=True)  # p_theta uniform, log p = -log 3
    ranker = torch.tensor([[1.0, 1.0, -3.0]])  # candidate 1 fools the ranker (ties the positive)
    rewards = [math.log(0.5), math.log(0.5), math.log(1 / (1 + math.exp(-4)))]
    loss = ar2_adversarial_loss(retriever, ranker)
    assert loss.item() == pytest.approx(-math.log(3) * sum(rewards), abs=1e-6)
    loss.backward()
    # gradient descent raises the score of the confusing negative above the easy one
    assert -retriever.grad[0, 1] > -retriever.grad[0, 2]


def test_retriever_loss_mixes_the_two_terms():
    s, r = torch.randn(2, 4, generator=torch.Generator().manual_seed(0)), torch.randn(2, 4)
    adv, kd = ar2_adversarial_loss(s, r), kl_distillation_loss(s, r)
    assert ar2_retriever_loss(s, r, lam=0.0).item() == pytest.approx(kd.item(), abs=1e-6)
    assert ar2_retriever_loss(s, r, lam=1.0).item() == pytest.approx(adv.item(), abs=1e-6)
    assert ar2_retriever_loss(s, r, lam=0.3).item() == pytest.approx(0.3 * adv.item() + 0.7 * kd.item(), abs=1e-6)
    with pytest.raises(ValueError, match="lambda"):
        ar2_retriever_loss(s, r, lam=1.5)


def test_the_two_terms_pull_alike_when_the_ranker_has_no_opinion():
    """A ranker that scores every candidate alike gives every reward log 1/2 and a uniform teacher, so
    the two terms' gradients are proportional: adv = C·log 2 · kd for C candidates. Adam's update does
    not depend on the gradient's scale, so with such a ranker λ cannot change what the retriever learns
    (the toy leaderboard's untrained tiny ranker is one)."""
    scores = torch.tensor([[0.3, -1.0, 2.0, 0.5]])
    grads = []
    for loss_fn in (ar2_adversarial_loss, kl_distillation_loss):
        s = scores.clone().requires_grad_(True)
        loss_fn(s, torch.full((1, 4), 7.0)).backward()
        grads.append(s.grad[0])
    adv, kd = grads
    torch.testing.assert_close(adv, 4 * math.log(2) * kd, rtol=0, atol=1e-6)
    assert kd.abs().min() > 1e-2  # not a vacuous 0 = 0


def tiny_cross_encoder(seed: int = 0) -> CrossEncoder:
    return make_tiny_cross_encoder(seed, hidden=16)


def test_groups_and_refresh_on_toy_data(toy_data):
    retriever = BiEncoder.tiny(seed=0)
    qids = toy_data.qids("train")
    universe = toy_data.search_pids("train")
    pool = refresh_pool(retriever, toy_data, qids, universe, depth=5)
    assert candidate_universe(pool, toy_data, qids, 2)[:1] == [toy_data.positives[qids[0]][0]]
    groups = sample_groups(pool, toy_data, qids, negatives=2, depth=5, rng=random.Random(0))
    for qid, group in zip(qids, groups):
        assert len(group) == 3 and group[0] in toy_data.positives[qid]
        assert not set(group[1:]) & set(toy_data.positives[qid])  # labelled positives never negatives
    with pytest.raises(ValueError, match="fewer than"):
        sample_groups(pool, toy_data, qids, negatives=9, depth=5, rng=random.Random(0))


TOY_GAME = AR2Config(iterations=2, ranker_steps=1, retriever_steps=1, batch_size=2, negatives=2, depth=4, seed=0)


def run_toy(toy_data, with_ranker: bool, first_pool=None, picks=None) -> tuple[list[float], np.ndarray]:
    retriever = BiEncoder.tiny(layers=1, hidden=32, seed=0)
    ranker = tiny_cross_encoder() if with_ranker else None
    qids = toy_data.qids("train")
    history = train_ar2(retriever, ranker, toy_data, qids, toy_data.search_pids("train"), TOY_GAME, progress=False,
                        first_pool=first_pool, picks=picks)
    losses = [r["retriever_loss"] for r in history.rows if "retriever_loss" in r]
    return losses, retriever.encode_queries(["cats"])


def test_train_ar2_alternates_and_is_reproducible(toy_data):
    losses, vector = run_toy(toy_data, with_ranker=True)
    again, vector_again = run_toy(toy_data, with_ranker=True)
    assert len(losses) == 2 and losses == pytest.approx(again)
    assert np.allclose(vector, vector_again)
    alone, vector_alone = run_toy(toy_data, with_ranker=False)
    assert not np.allclose(vector, vector_alone)  # the ranker changed what the retriever learned


def test_a_first_pool_computed_once_gives_the_same_game(toy_data):
    """The starting retriever's refresh, handed in, replaces iteration 1's own: same groups, losses and
    weights to the last bit; a different pool changes the groups, so the pool handed in is the one used."""
    qids, universe = toy_data.qids("train"), toy_data.search_pids("train")
    first = refresh_pool(BiEncoder.tiny(layers=1, hidden=32, seed=0), toy_data, qids, universe, TOY_GAME.depth)
    picks, shared_picks, other_picks = [], [], []
    losses, vector = run_toy(toy_data, True, picks=picks)
    shared, shared_vector = run_toy(toy_data, True, first_pool=first, picks=shared_picks)
    assert shared == losses and np.array_equal(shared_vector, vector) and shared_picks == picks
    reversed_pool = dataclasses.replace(first, pids=[p[::-1] for p in first.pids], hidden=[h[::-1] for h in first.hidden])
    run_toy(toy_data, True, first_pool=reversed_pool, picks=other_picks)
    assert other_picks[0] != picks[0]  # the first retriever step's groups came from the pool handed in
    with pytest.raises(ValueError, match="first_pool ranks 1 queries, not the game's"):
        train_ar2(BiEncoder.tiny(layers=1, hidden=32, seed=0), None, toy_data, qids, universe, TOY_GAME,
                  progress=False, first_pool=refresh_pool(BiEncoder.tiny(layers=1, hidden=32, seed=0), toy_data,
                                                          qids[:1], universe, TOY_GAME.depth))


def test_sharpness_of_hand_made_distributions():
    flat, sure = [0.25, 0.25, 0.25, 0.25], [0.7, 0.1, 0.1, 0.1]
    out = sharpness(np.array([flat, sure, [0.1, 0.7, 0.1, 0.1]]))
    assert out["p_positive"] == pytest.approx((0.25 + 0.7 + 0.1) / 3)
    assert out["positive_first"] == pytest.approx(2 / 3)  # a flat row's argmax is column 0: a tie counts for it
    h_sure = -(0.7 * math.log(0.7) + 3 * 0.1 * math.log(0.1))
    assert out["entropy"] == pytest.approx((math.log(4) + 2 * h_sure) / 3)
    assert out["uniform_entropy"] == pytest.approx(math.log(4))
    assert sharpness(np.array([[1.0, 0.0]]))["entropy"] == 0.0  # 0 log 0 = 0, no nan
    with pytest.raises(ValueError, match="need \\(groups, 1 \\+ candidates\\)"):
        sharpness(np.array([0.5, 0.5]))

