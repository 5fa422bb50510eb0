"""Actionness: order verification ([002]) and discrimination + post-processing ([000]) on synthetic videos."""

import numpy as np
import pytest
import torch

from temporal.data import intervals_to_labels
from temporal.discrim import (
    CueSVM,
    DiscrimConfig,
    DiscrimVideo,
    cue_vector,
    step_probabilities,
    train_discriminator,
    tune_alpha,
)
from temporal.dp import align_one, fuse_actionness, oracle_scores
from temporal.metrics import action_ap, chance_actionness
from temporal.models import StepVideo, TrainConfig, train_step_model
from temporal.order import OrderConfig, OrderVerifier, train_order_verification
from temporal.step_windows import constraint_mask


def test_order_score_is_antisymmetric_and_weights_sum_to_one():
    torch.manual_seed(0)
    model = OrderVerifier(8)
    X = torch.randn(6, 5, 8)
    assert torch.allclose(model(X.flip(1)), -model(X), atol=1e-6)
    W = model.pair_weights(X)
    assert W.shape == (6, 10) and torch.allclose(W.sum(1), torch.ones(6))


def _ap(ds, score):
    test = ds.by_split("test")
    return action_ap([score(v) for v in test], [v.intervals for v in test])


@pytest.fixture(scope="module")
def order_models(intro_ds):
    X = [v.X for v in intro_ds.videos if v.split in ("train", "related")]
    return {trim: train_order_verification(X, OrderConfig(trim=trim, epochs=10)) for trim in (0.3, 0.0)}


@pytest.mark.slow
def test_order_actionness_beats_chance_and_chance_trim(intro_ds, order_models):
    rng = np.random.default_rng(0)
    ours = _ap(intro_ds, lambda v: order_models[0.3].actionness(v.X))
    chance = _ap(intro_ds, lambda v: chance_actionness(len(v.X), rng))
    chance_trim = _ap(intro_ds, lambda v: chance_actionness(len(v.X), rng, 0.3))
    assert chance_trim > chance
    assert ours > chance_trim + 0.05


@pytest.mark.slow
def test_trimming_helps_with_intros(intro_ds, order_models):
    assert (
        _ap(intro_ds, lambda v: order_models[0.3].actionness(v.X))
        > _ap(intro_ds, lambda v: order_models[0.0].actionness(v.X)) + 0.05
    )


@pytest.fixture(scope="module")
def step_model(intro_ds):
    steps = intro_ds.steps()
    vids = [
        StepVideo(v.task_id, v.X, constraint_mask(v.constraints, len(v.X), len(steps[v.task_id])))
        for v in intro_ds.by_split("train")[::2]
    ]
    model = train_step_model(vids, steps, TrainConfig(pretrain_epochs=5, epochs=10, lr=3e-3))
    model.add_tasks({"__all__": sorted({s for ss in steps.values() for s in ss})})
    return model


def _triples(ds, model, videos, actionness):
    out = []
    for v in videos:
        S = model.log_probs(v.X, v.task_id)
        out.append((S, actionness(v), intervals_to_labels(v.intervals, len(v.X), S.shape[1])))
    return out


def _recall(triples, alpha=None, oracle=False):
    hit = tot = 0
    for S, a, Y in triples:
        SS = oracle_scores(S, Y) if oracle else S if alpha is None else fuse_actionness(S, a, alpha, True)
        hit += Y[align_one(SS), np.arange(Y.shape[1])].sum()
        tot += Y.any(0).sum()
    return hit / tot


@pytest.mark.slow
def test_fusing_order_actionness_raises_recall(intro_ds, order_models, step_model):
    act = order_models[0.3]
    hold = _triples(intro_ds, step_model, intro_ds.by_split("train")[1::2], lambda v: act.actionness(v.X))
    alpha, _ = tune_alpha(hold)
    test = _triples(intro_ds, step_model, intro_ds.by_split("test"), lambda v: act.actionness(v.X))
    assert alpha > 0 and _recall(test, alpha) > _recall(test)


@pytest.fixture(scope="module")
def discriminators(intro_ds, step_model):
    def dv(v):
        A = np.exp(step_model.log_probs(v.X, "__all__"))
        return DiscrimVideo(v.X, A, intervals_to_labels(v.intervals, len(v.X), 11).any(1).astype(np.float32))

    train = intro_ds.by_split("train")
    fit, hold = [dv(v) for v in train[1::4]], [dv(v) for v in train[3::4]]
    conf = DiscrimConfig(hidden=64, batch=256, max_epochs=40, patience=5)
    return {"d": train_discriminator(fit, hold, conf), "svm": CueSVM().fit([x.A for x in fit], [x.y for x in fit])}


@pytest.mark.slow
def test_discrimination_actionness_and_post_processing(intro_ds, step_model, discriminators):
    d, svm = discriminators["d"], discriminators["svm"]
    rng = np.random.default_rng(0)
    chance = _ap(intro_ds, lambda v: chance_actionness(len(v.X), rng))
    assert _ap(intro_ds, lambda v: d.actionness(v.X)) > chance + 0.1
    assert _ap(intro_ds, lambda v: svm.actionness(np.exp(step_model.log_probs(v.X, "__all__")))) > chance
    hold = _triples(intro_ds, step_model, intro_ds.by_split("train")[3::4], lambda v: d.actionness(v.X))
    alpha, _ = tune_alpha(hold)
    test = _triples(intro_ds, step_model, intro_ds.by_split("test"), lambda v: d.actionness(v.X))
    oracle, post, base = _recall(test, oracle=True), _recall(test, alpha), _recall(test)
    assert oracle >= post >= base and oracle > base


def test_cue_vector():
    a = step_probabilities(np.array([[5.0, 0, 0], [0, 0, 0], [5.0, 0, 0]]))
    r = cue_vector(a)
    assert r.shape == (3, 4)
    assert r[0, 0] > r[1, 0] and r[0, 1] < r[1, 1]  # confident clip: high max, low entropy


def test_an_ensemble_scores_the_sign_aligned_mean_of_its_members(intro_ds):
    from temporal.actionness import ensemble

    X = [v.X for v in intro_ds.videos if v.split in ("train", "related")]
    conf = OrderConfig(epochs=2)
    members = [train_order_verification(X, OrderConfig(epochs=2, seed=k)) for k in range(3)]
    allX = np.concatenate(X)
    z = [(s - s.mean()) / s.std() for s in (m.actionness(allX) for m in members)]
    # a member whose learned sign disagrees with the others is flipped before averaging
    signs = [1.0 if float(zk @ sum(z)) >= 0 else -1.0 for zk in z]
    got = ensemble(X, conf, 3).actionness(allX)
    want = sum(s * zk for s, zk in zip(signs, z, strict=True)) / 3
    assert np.allclose(got - got.mean(), want - want.mean(), atol=1e-4)
    assert all(float(zk @ want) > 0 for zk in (s * zk for s, zk in zip(signs, z, strict=True)))
