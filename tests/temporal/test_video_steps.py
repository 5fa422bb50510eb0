"""Task files, task detection, narration constraints, 3D-grounded scores: the pieces of step timelines."""

from __future__ import annotations

import json

import numpy as np
import pytest

from grounding.narration import read_narrations
from recon.io import InputError
from temporal.dp import uniform_steps
from temporal.features import ClipCameras, sample_times
from temporal.grounded_scores import GroundedConfig, grounded_scores, seen_mass, view_weights
from temporal.tasks import (
    detect_tasks,
    find_task_file,
    look_scores,
    read_task_file,
    step_list,
    step_phrases,
    video_tasks,
)
from temporal.video_steps import (
    StepsConfig,
    action_cue,
    actionness_report,
    fuse,
    localize,
    orientation,
    step_constraints,
    with_prior,
)

TASKS = {
    "tasks": [
        {"id": "check_oil", "title": "check the oil", "steps": ["remove dipstick", "wipe dipstick", "top up oil"]},
        {
            "id": "replace_battery",
            "title": "replace the battery",
            "steps": ["disconnect negative terminal", "remove battery"],
        },
        {"id": "add_coolant", "title": "top up the coolant", "steps": ["open coolant reservoir", "add coolant"]},
    ]
}


def test_task_file_json_toml_and_clear_errors(tmp_path):
    (tmp_path / "tasks.json").write_text(json.dumps({**TASKS, "videos": {"v1": ["add_coolant"]}}))
    tf = read_task_file(tmp_path / "tasks.json")
    assert list(tf.tasks) == ["check_oil", "replace_battery", "add_coolant"] and tf.videos == {"v1": ["add_coolant"]}
    assert step_list(tf, ["add_coolant", "check_oil"])[1] == ("add_coolant", "add coolant")
    (tmp_path / "tasks.toml").write_text('[[tasks]]\nid = "a"\nsteps = ["x y", "z"]\n')
    assert read_task_file(tmp_path / "tasks.toml").tasks["a"].title == "a"
    for bad, needle in [
        ("{", "cannot parse"),
        ('{"tasks": []}', "non-empty 'tasks'"),
        ('{"tasks": [{"id": "a"}]}', "'steps'"),
        ('{"tasks": [{"id": "a", "steps": ["b"]}], "videos": {"v": ["zz"]}}', "unknown task"),
    ]:
        (tmp_path / "bad.json").write_text(bad)
        with pytest.raises(InputError, match=needle) as e:
            read_task_file(tmp_path / "bad.json")
        assert "bad.json" in str(e.value)
    with pytest.raises(InputError, match="--task nope"):
        video_tasks(tf, "v2", [], ["nope"])


def test_tasks_come_from_the_file_else_the_narration_in_spoken_order(tmp_path):
    (tmp_path / "tasks.json").write_text(json.dumps({**TASKS, "videos": {"v1": ["add_coolant"]}}))
    tf = read_task_file(tmp_path / "tasks.json")
    lines = [
        "hey guys welcome back",
        "first undo the negative terminal",
        "lift the battery out of the tray",
        "now pull out the oil dipstick",
        "wipe the dipstick clean",
        "we'll look at the coolant another time",
        "take off the oil cap and top up the oil",
    ]
    assert detect_tasks(lines, tf.tasks) == ["replace_battery", "check_oil"]
    assert video_tasks(tf, "v1", lines) == (["add_coolant"], "file")
    assert video_tasks(tf, "v2", lines)[1] == "narration"
    assert video_tasks(tf, "v2", lines, ["check_oil"]) == (["check_oil"], "option")
    chatter = ["okay give it a wiggle", "alright let's move on"]
    assert detect_tasks(chatter, tf.tasks) == [] and detect_tasks([], tf.tasks) == []
    (only,) = [t for t in tf.tasks if t == "check_oil"]
    assert detect_tasks(chatter, {only: tf.tasks[only]}) == [only]  # one task: every video does it


def test_a_video_whose_narration_never_names_its_task_gets_the_task_it_looks_at(tmp_path):
    (tmp_path / "tasks.json").write_text(json.dumps(TASKS))
    tf = read_task_file(tmp_path / "tasks.json")
    phrases = step_phrases(tf.tasks)
    assert phrases[3:5] == ["disconnect negative terminal", "remove battery"]
    # 10 clips: the camera looks around for 4, then at the battery's two steps (columns 3, 4) for 6
    M = np.full((10, len(phrases)), 0.02)
    M[4:, 3:5] = 0.2
    looks = look_scores(M, tf.tasks)
    assert max(looks, key=lambda t: looks[t][0]) == "replace_battery" and looks["replace_battery"][1] > 4
    assert looks["check_oil"][0] == 0.0  # looked at less than the average step's place: no evidence
    chatter = ["okay give it a wiggle", "alright let's move on"]
    asked = []

    def seen(ph: list[str]) -> np.ndarray:
        asked.append(ph)
        return M

    assert video_tasks(tf, "v", chatter, None, seen) == (["replace_battery"], "looks")
    assert asked == [phrases]
    assert video_tasks(tf, "v", chatter, None, lambda ph: None) == ([], "narration")  # not reconstructed
    assert video_tasks(tf, "v", chatter, None, lambda ph: np.full((10, len(ph)), 0.02)) == ([], "looks")  # flat
    # a task the presenter names stands, whatever the camera looks at: the looks are not even asked
    said = ["now pull out the oil dipstick", "wipe the dipstick clean", "top up the oil"]
    assert video_tasks(tf, "v", said, None, seen) == (["check_oil"], "narration") and len(asked) == 1
    # nor are a task entry or --task second-guessed
    (tmp_path / "tasks.json").write_text(json.dumps({**TASKS, "videos": {"v": ["add_coolant"]}}))
    assert video_tasks(read_task_file(tmp_path / "tasks.json"), "v", chatter, None, seen) == (["add_coolant"], "file")
    assert len(asked) == 1


def test_grounded_scores_are_the_centred_seen_mass():
    centers = np.array([[0.0, 0, 0], [1.5, 0, 0], [3.0, 0, 0]])
    heat = np.array([[0.8, 0.1, 0.1], [0.1, 0.1, 0.8], [0.3, 0.4, 0.3]])
    cams = _cameras_looking_at(np.array([[x, 0, 0] for x in (0, 1.5, 3, 3, 0)], float), 5)
    M = seen_mass(heat, centers, cams, 5)
    assert M.shape == (5, 3) and (M >= 0).all() and M[0, 0] > M[0, 1] and M[2, 1] > M[2, 0]
    # the heatmaps' contrast (minus their mean) then centring and one scale, as the step scores were defined
    W = view_weights(cams, centers, 5, GroundedConfig().sigma)
    S = W @ (heat - heat.mean(0)).T
    S = S - S.mean(0)
    assert np.allclose(grounded_scores(heat, centers, cams, 5), S / S.std())


def test_constraints_follow_the_narrating_cue_not_the_intro():
    steps = ["remove dipstick", "wipe dipstick", "top up oil"]
    lines = [
        ("today I show you how to remove the dipstick, wipe the dipstick and top up oil", 0.0, 3.0),
        ("pull out the dipstick", 5.0, 6.5),
        ("give the dipstick a wipe", 9.0, 10.5),
        ("open the cap and top up the oil", 14.0, 16.0),
    ]
    M = step_constraints(lines, steps, 20, StepsConfig(constraint_pad=1.0, constraint_until_next=False))
    assert M[:, 0].nonzero()[0].tolist() == [4, 5, 6, 7]
    assert M[8:12, 1].all() and not M[:8, 1].any()
    assert M[13:17, 2].all() and not M[:13, 2].any()
    assert step_constraints(lines, steps, 20, StepsConfig(use_constraints=False)) is None
    # by default a step holds until the next step's cue; the last one as long as the others (not the outro)
    M = step_constraints(lines, steps, 20, StepsConfig(constraint_pad=1.0))
    assert M[:, 0].nonzero()[0].tolist() == list(range(4, 10))  # 5.0 s .. 9.0 s (+1 s pad each side)
    assert M[:, 1].nonzero()[0].tolist() == list(range(8, 15))  # 9.0 s .. 14.0 s
    assert M[:, 2].nonzero()[0].tolist() == list(range(13, 20))  # 14.0 s .. 16.0 + median(4, 5) s + 1 s


def _cameras_looking_at(targets: np.ndarray, T: int) -> ClipCameras:
    """One sample per clip, the camera 1 m in front (-y) of its target, looking at it (+y)."""
    times, clip = sample_times(float(T), 1)
    R = np.repeat(np.array([[[1.0, 0, 0], [0, 0, -1], [0, 1, 0]]]), T, 0)  # camera z = world +y, y = world -z
    C = targets - [0.0, 1.0, 0.0]
    return ClipCameras(times, clip, R, C, np.array([[300.0, 0, 160], [0, 300, 120], [0, 0, 1]]), 320, 240)


def test_grounded_scores_rise_when_the_camera_looks_at_the_steps_heatmap():
    centers = np.array([[0.0, 0, 0], [1.5, 0, 0], [3.0, 0, 0]])
    heat = np.array([[0.8, 0.1, 0.1], [0.1, 0.1, 0.8]])  # step 1 at x=0, step 2 at x=3
    targets = np.array([[x, 0, 0] for x in (1.5, 0, 0, 1.5, 3, 3, 1.5)], float)
    S = grounded_scores(heat, centers, _cameras_looking_at(targets, 7), 7)
    assert S.shape == (7, 2)
    assert set(np.argsort(-S[:, 0])[:2]) == {1, 2} and set(np.argsort(-S[:, 1])[:2]) == {4, 5}
    clips, y = localize(S, 7, 2, None, StepsConfig())
    assert clips.tolist() in ([1, 4], [1, 5], [2, 4], [2, 5]) and y[4] == y[5] == 2 and y[1] == 1


def test_grounded_scores_of_an_undistinctive_step_stay_flat():
    centers = np.array([[0.0, 0, 0], [1.5, 0, 0], [3.0, 0, 0]])
    # step 3's heatmap is spread over both parts of steps 1 and 2: the camera never looks at it more than at theirs
    heat = np.array([[0.8, 0.1, 0.1], [0.1, 0.1, 0.8], [0.44, 0.1, 0.46]])
    targets = np.array([[x, 0, 0] for x in (0, 0, 1.5, 3, 3, 1.5)], float)
    S = grounded_scores(heat, centers, _cameras_looking_at(targets, 6), 6)
    # its near-zero evidence must not be blown up to the same weight as the others' (per-step z-scores would)
    assert S[:, 2].std() < 0.2 * min(S[:, 0].std(), S[:, 1].std())


def test_actionness_is_oriented_by_the_narration_and_the_intro_outro_prior():
    T = 10
    middle = action_cue([], T)  # no subtitles: the middle 40 % of the video is the guess
    assert middle.tolist() == [0, 0, 0, 1, 1, 1, 1, 0, 0, 0]
    talk = [("now remove the dipstick", 2.0, 5.0)]  # spoken during clips 2-4
    cue = action_cue(talk, T)
    assert cue.tolist() == [0, 0, 0.5, 1, 1, 0.5, 0.5, 0, 0, 0]
    action = np.array([0, 0, 1, 1, 1, 1, 1, 0, 0, 0.0])
    assert orientation([action, action + 3], [cue, middle]) == 1.0
    assert orientation([-action, -action], [cue, middle]) == -1.0
    # talk during an intro alone would flip a good score; the prior outvotes it
    intro = action_cue([("hi everyone, today we check the oil", 0.0, 3.0)], T)
    assert orientation([action], [intro]) == 1.0


def test_synth_writes_the_task_file_and_narration_finds_the_filmed_tasks(small_world):
    _, (scene_dir,) = small_world
    tf = read_task_file(find_task_file(scene_dir))
    gt = json.loads((scene_dir / "ground_truth.json").read_text())
    for v, truth in gt["videos"].items():
        lines = [n.text for n in read_narrations(scene_dir / truth["subtitles"])]
        tasks, source = video_tasks(tf, v, lines)
        assert source == "narration"
        filmed = {s["task"] for s in truth["steps"]}
        assert filmed <= set(tasks) <= set(truth["tasks"]), (v, tasks, truth["tasks"])
        assert {(s["task"], s["step"]) for s in truth["steps"]} <= set(step_list(tf, tasks))


def test_position_prior_is_the_default_where_evidence_is_flat_and_yields_to_evidence():
    T, K = 40, 4
    flat = np.zeros((T, K))
    clips, _ = localize(fuse(flat, None, None, StepsConfig()), T, K, None, StepsConfig())
    assert np.abs(clips - uniform_steps(T, K)).max() <= 1  # no evidence: the uniform slots
    S = np.zeros((T, K))
    S[30:33, 0] = 5.0  # strong evidence that step 1 happens late
    clips, y = localize(fuse(S, None, None, StepsConfig()), T, K, None, StepsConfig())
    assert (y[30:33] == 1).all() and (y[33:] > 1).all()  # step 1's run takes the evidence, the others follow
    assert list(clips) == sorted(clips) and all(y[c] == k + 1 for k, c in enumerate(clips))  # clips: run centres


def test_actionness_report_and_the_intro_outro_prior():
    gt = [[{"start": 4.0, "end": 6.0}]] * 3  # action in the middle of 10 s videos
    noise = [np.random.default_rng(i).random(10) for i in range(3)]
    r = actionness_report(noise, gt)
    assert r["chance"] == pytest.approx(0.2) and r["chance"] < r["chance_trim"] < 1.0
    mixed = [with_prior(a, 0.5) for a in noise]
    assert actionness_report(mixed, gt)["ap"] > r["ap"]  # the prior lifts an uninformative score
    assert with_prior(noise[0], 0.0) is noise[0]
