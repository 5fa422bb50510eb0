"""Weakly supervised step models: the seeds' relative claims on few-video synthetic data."""

import numpy as np
import pytest

from temporal.data import intervals_to_labels
from temporal.dp import steps_to_labels, uniform_steps
from temporal.metrics import mean_over_tasks, step_recall
from temporal.models import StepModel, StepVideo, TrainConfig, component_matrices, train_step_model
from temporal.step_windows import constraint_mask

FAST = dict(pretrain_epochs=10, epochs=20, lr=3e-3)


def _videos(ds, split, constraints=True):
    steps = ds.steps()
    return [
        StepVideo(
            v.task_id, v.X, constraint_mask(v.constraints, len(v.X), len(steps[v.task_id])) if constraints else None
        )
        for v in ds.by_split(split)
    ]


def _recall(ds, split, predict):
    Yt, Yp = {}, {}
    for v in ds.by_split(split):
        K = len(ds.tasks[v.task_id].steps)
        Yt.setdefault(v.task_id, {})[v.video_id] = intervals_to_labels(v.intervals, len(v.X), K)
        Yp.setdefault(v.task_id, {})[v.video_id] = steps_to_labels(predict(v), len(v.X))
    return mean_over_tasks(step_recall(Yt, Yp))


@pytest.fixture(scope="module")
def results(small_ds):
    steps = small_ds.steps()
    train, related = _videos(small_ds, "train"), _videos(small_ds, "related")
    runs = {
        "task-specific": (train, TrainConfig(share="none", **FAST)),
        "component": (train, TrainConfig(share="words", **FAST)),
        "component+related": (train + related, TrainConfig(share="words", **FAST)),
        "component+related, no constraints": (
            train + related,
            TrainConfig(share="words", use_constraints=False, **FAST),
        ),
    }
    out = {}
    for name, (vids, conf) in runs.items():
        model = train_step_model(vids, steps, conf)
        out[name] = _recall(small_ds, "test", lambda v, m=model: m.localize(v.X, v.task_id))
        out[name + " model"] = model
    out["uniform"] = _recall(small_ds, "test", lambda v: uniform_steps(len(v.X), len(steps[v.task_id])))
    return out


def test_component_matrix_shares_stemmed_words():
    comps, A = component_matrices({"a": ["pour milk", "whisk the eggs"], "b": ["pouring milk"]}, "words")
    assert comps == ["egg", "milk", "pour", "whisk"]
    assert A["a"][:, 0].tolist() == A["b"][:, 0].tolist() == [0, 1, 1, 0]
    comps, _ = component_matrices({"a": ["pour milk"], "b": ["pour milk"]}, "none")
    assert len(comps) == 2


@pytest.mark.slow
def test_components_beat_task_specific_with_few_videos(results):
    assert results["component"] >= results["task-specific"]


@pytest.mark.slow
def test_related_tasks_help(results):
    assert results["component+related"] > results["component"]


@pytest.mark.slow
def test_narration_constraints_help(results):
    assert results["component+related"] > results["component+related, no constraints"]


@pytest.mark.slow
def test_trained_models_beat_uniform(results):
    assert results["component+related"] > results["uniform"] + 0.05


@pytest.mark.slow
def test_unseen_tasks_zero_shot(small_ds, results):
    model = results["component+related model"]
    unseen = {t: small_ds.tasks[t].steps for t, k in small_ds.kind.items() if k == "unseen"}
    model.add_tasks(unseen)
    zs = _recall(small_ds, "unseen", lambda v: model.localize(v.X, v.task_id))
    uni = _recall(small_ds, "unseen", lambda v: uniform_steps(len(v.X), len(unseen[v.task_id])))
    assert zs > uni


@pytest.mark.slow
def test_save_load_round_trip(tmp_path, small_ds, results):
    model = results["component model"]
    model.save(tmp_path / "m")
    loaded = StepModel.load(tmp_path / "m")
    v = small_ds.by_split("test")[0]
    assert np.allclose(loaded.log_probs(v.X, v.task_id), model.log_probs(v.X, v.task_id), atol=1e-6)
    assert not list(tmp_path.glob("m/*.pt")) and not list(tmp_path.glob("m/*.pkl"))


def test_gradient_norm_projection_runs(small_ds):
    conf = TrainConfig(pretrain_epochs=1, epochs=1, delta=1e-3)
    model = train_step_model(_videos(small_ds, "train")[:4], small_ds.steps(), conf)
    assert np.isfinite(model.linear.weight.detach().numpy()).all()
