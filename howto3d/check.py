"""``howto3d check``: the promises the stages make each other, verified on the files where they are kept.

Per scene: every sampled video's ``frames.json`` (unique names, finite and strictly increasing times); each
video's SfM segments (no frame registered in two, every registered frame listed in ``frames.json``); the
alignment (every aligned segment has a model with registered frames, every transform a finite similarity with a
positive scale); and freshness: the alignment, the grounding model (its inputs, and the shared frame it was
trained in) and the temporal records (clip features, actionness, step timelines or discovered key steps,
groundedness) against their current inputs. Freshness asks each stage's own ``*_step`` function, the one its
command runs through ``Workspace.run_step``, so "stale" means exactly "a rerun would redo it". A stage that never
ran is no problem.

Nothing here writes, trains or computes a stage: pycolmap and the temporal adapters (torch) are imported by the
checks that read them, not with this module (tests/cli/test_startup.py).
"""

from __future__ import annotations

import math
import shlex
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from itertools import pairwise
from pathlib import Path
from typing import TYPE_CHECKING, Literal, TypedDict

import numpy as np

from grounding import query as gquery
from howto3d import grounding_cmds, scenes
from howto3d.workspace import StepSpec, Workspace
from recon.io import InputError

if TYPE_CHECKING:
    from recon.align import Alignment

TEMPORAL = ("features", "actionness", "steps", "discover", "groundedness")
"""Stage records keyed by scene that the temporal checks read."""


class ProblemRecord(TypedDict):
    """One problem of ``check --json`` (:meth:`Problem.to_json`)."""

    scene: str | None
    path: str
    message: str
    fix: str


class CheckReport(TypedDict):
    """``check --json``: ``ok`` when nothing is wrong, else every problem."""

    ok: bool
    problems: list[ProblemRecord]


@dataclass(frozen=True)
class Problem:
    """One broken promise: the file concerned, what is wrong with it and the command that fixes it."""

    scene: str | None
    """The scene concerned (``None``: the whole workspace, e.g. a changed grounding setting)."""
    path: Path
    message: str
    fix: str

    def line(self) -> str:
        return f"{self.path}: {self.message}; run `{self.fix}`"

    def to_json(self) -> ProblemRecord:
        return {"scene": self.scene, "path": str(self.path), "message": self.message, "fix": self.fix}


def report(problems: list[Problem]) -> CheckReport:
    """The ``check --json`` document of :func:`check`'s problems."""
    return {"ok": not problems, "problems": [p.to_json() for p in problems]}


def check(ws: Workspace, scene: str | None = None) -> list[Problem]:
    """Every broken promise of the workspace (of ``scene`` only when given), in a stable order."""
    problems: list[Problem] = []
    sound = []
    for s in ws.select_scenes(scene):
        found, frame_ok = _scene(ws, s)
        problems += found
        if frame_ok:
            sound.append(s)
    return problems + _grounding(ws, scene, sound)


def summary(ws: Workspace, scene: str | None = None) -> str:
    """What :func:`check` looked at, as one line for a workspace without problems."""
    from recon import sampling as frames_stage
    from recon.reconstruct import segment_dirs

    names = ws.select_scenes(scene)
    videos = [v for s in names for v in ws.videos(s)]
    sampled = [ws.frames_dir(v.scene, v.name) for v in videos if frames_stage.is_done(ws.frames_dir(v.scene, v.name))]
    frames = sum(len(frames_stage.load(d)["frames"]) for d in sampled)
    segments = sum(len(segment_dirs(ws.sfm_dir(v.scene, v.name))) for v in videos)
    return (
        f"ok: {len(names)} scene(s), {len(videos)} video(s), {frames} sampled frames, {segments} SfM segment(s); "
        "every recorded stage is current"
    )


def _cmd(ws: Workspace, command: str, *args: str) -> str:
    """The command line that fixes a problem, runnable as printed."""
    return " ".join(["howto3d", command, *map(shlex.quote, [str(ws.root), *args])])


def _some(items: Iterable[str], n: int = 3) -> str:
    items = list(items)
    return ", ".join(items[:n]) + (f" and {len(items) - n} more" if len(items) > n else "")


def _reason(e: Exception, path: Path) -> str:
    """An error's message without the path a problem line already starts with."""
    return str(e).removeprefix(f"{path}: ")


def _scene(ws: Workspace, s: str) -> tuple[list[Problem], bool]:
    """A scene's problems, and whether its transforms read as a shared frame (only then is the frame the
    grounding model was trained in compared with it)."""
    from howto3d import recon_cmds
    from recon.align import Alignment

    problems: list[Problem] = []
    path = ws.align_dir(s) / "transforms.json"
    alignment, sound = None, True
    if Alignment.is_done(path.parent):
        try:
            alignment = Alignment.load(path.parent)
        except (InputError, KeyError, TypeError, ValueError) as e:
            problems.append(
                Problem(s, path, f"unreadable ({_reason(e, path)})", _cmd(ws, "align", "--scene", s, "--force"))
            )
            sound = False
    registered: dict[str, dict[int, int]] = {}
    for v in sorted({v.name for v in ws.videos(s)} | set(alignment.shared_from_segment if alignment else ())):
        names, found = _frames(ws, s, v)
        problems += found
        registered[v], found = _segments(ws, s, v, names)
        problems += found
    if alignment is not None:
        transforms = _transforms(ws, s, alignment)
        sound = not transforms
        problems += transforms + _models(ws, s, alignment, registered)
        problems += _stale(ws, s, recon_cmds.align_step(ws, s), path, "the alignment", _cmd(ws, "align", "--scene", s))
    return problems + _temporal(ws, s), sound


def _frames(ws: Workspace, s: str, v: str) -> tuple[set[str] | None, list[Problem]]:
    """A sampled video's frame names (``None`` when not sampled or unreadable) and what is wrong with them."""
    from recon import sampling as frames_stage

    folder = ws.frames_dir(s, v)
    path = folder / "frames.json"
    fix = _cmd(ws, "reconstruct", "--scene", s, "--force")
    if not frames_stage.is_done(folder):
        return None, []
    try:
        frames = frames_stage.load(folder)["frames"]
        names, times = [f["name"] for f in frames], [f["time"] for f in frames]
    except (InputError, KeyError, TypeError) as e:
        return None, [Problem(s, path, f"unreadable ({_reason(e, path)})", fix)]
    problems = []
    repeated = sorted(n for n, k in Counter(names).items() if k > 1)
    if repeated:
        problems.append(
            Problem(s, path, f"{len(repeated)} frame name(s) listed more than once ({_some(repeated)})", fix)
        )
    bad = [
        n
        for n, t in zip(names, times, strict=True)
        if isinstance(t, bool) or not isinstance(t, int | float) or not math.isfinite(t)
    ]
    back = [(a, ta, b, tb) for (a, ta), (b, tb) in pairwise(zip(names, times, strict=True)) if not tb > ta]
    if bad:
        problems.append(Problem(s, path, f"{len(bad)} frame(s) without a finite time ({_some(bad)})", fix))
    elif back:
        a, ta, b, tb = back[0]
        problems.append(
            Problem(
                s,
                path,
                f"times not strictly increasing at {len(back)} frame(s), first {b} at {tb:g} s after {a} at {ta:g} s",
                fix,
            )
        )
    return set(names), problems


def _segments(ws: Workspace, s: str, v: str, frame_names: set[str] | None) -> tuple[dict[int, int], list[Problem]]:
    """Frames registered per segment of a video's SfM, and what breaks "each frame in at most one segment, and
    listed in frames.json"."""
    from recon.reconstruct import Model, registered_names

    model = Model(ws.sfm_dir(s, v))
    owner: dict[str, int] = {}
    registered: dict[int, int] = {}
    problems = []
    redo = _cmd(ws, "reconstruct", "--scene", s, "--force")
    for k, folder in model.segments().items():
        try:
            names = registered_names(model.load(k))
        except (RuntimeError, ValueError, OSError) as e:
            problems.append(Problem(s, folder, f"unreadable COLMAP model ({e})", redo))
            continue
        registered[k] = len(names)
        repeated = sorted(n for n in names if n in owner)
        if repeated:
            others = ", ".join(map(str, sorted({owner[n] for n in repeated})))
            problems.append(
                Problem(
                    s,
                    folder,
                    f"segment {k} registers {len(repeated)} frame(s) that segment {others} "
                    f"registers too ({_some(repeated)}); a frame belongs to one segment",
                    redo,
                )
            )
        for n in sorted(names):
            owner.setdefault(n, k)
        unknown = sorted(names - frame_names) if frame_names is not None else []
        if unknown:
            problems.append(
                Problem(
                    s,
                    folder,
                    f"segment {k} registers {len(unknown)} frame(s) that frames.json does not list ({_some(unknown)})",
                    redo,
                )
            )
    if registered and frame_names is None and not (ws.frames_dir(s, v) / "frames.json").is_file():
        problems.append(
            Problem(s, ws.frames_dir(s, v) / "frames.json", "missing: the SfM model's frames have no times", redo)
        )
    return registered, problems


def _transforms(ws: Workspace, s: str, alignment: Alignment) -> list[Problem]:
    """Every stored transform (each aligned segment's, the frame's own) is a finite similarity."""
    from recon.align import node_name
    from recon.sim3 import sim3_from_json

    sims = {
        node_name(v, k): sim
        for v, segs in sorted(alignment.shared_from_segment.items())
        for k, sim in sorted(segs.items())
    }
    if alignment.frame.get("frame_from_reference"):
        sims["frame_from_reference"] = sim3_from_json(alignment.frame["frame_from_reference"])
    return [
        Problem(
            s,
            ws.align_dir(s) / "transforms.json",
            f"the transform of {node} is not a finite similarity with a positive scale (scale {sim.scale:g})",
            _cmd(ws, "align", "--scene", s, "--force"),
        )
        for node, sim in sims.items()
        if not _similarity(sim)
    ]


def _models(ws: Workspace, s: str, alignment: Alignment, registered: dict[str, dict[int, int]]) -> list[Problem]:
    """Every aligned segment has a model folder with registered frames."""
    from recon.align import node_name
    from recon.reconstruct import Model

    path = ws.align_dir(s) / "transforms.json"
    fix = _cmd(ws, "align", "--scene", s, "--force")
    problems = []
    for v, segs in sorted(alignment.shared_from_segment.items()):
        folders = Model(ws.sfm_dir(s, v)).segments()
        for k in sorted(segs):
            folder = folders.get(k, ws.sfm_dir(s, v) / ("model" if k == 0 else f"segments/{k}"))
            if k not in folders:
                problems.append(Problem(s, folder, f"missing, yet {path.name} aligns {node_name(v, k)} from it", fix))
            elif registered.get(v, {}).get(k) == 0:
                problems.append(
                    Problem(s, folder, f"registers no frame, yet {path.name} aligns {node_name(v, k)} from it", fix)
                )
    return problems


def _similarity(sim) -> bool:
    """A finite Sim(3) with a positive scale and a proper rotation (a zero quaternion is none)."""
    m = np.asarray(sim.matrix(), float)
    if not (np.isfinite(m).all() and sim.scale > 0):
        return False
    r = m[:, :3] / sim.scale
    return bool(np.allclose(r @ r.T, np.eye(3), atol=1e-6))


def _state(ws: Workspace, spec: StepSpec) -> list[str] | bool | None:
    """``True``: recorded from the current inputs; the changed inputs when a rerun would redo it; ``None`` when it
    was never recorded."""
    step = ws.step(*spec)
    return True if step.done else step.changes()


def _stale(ws: Workspace, scene: str | None, spec: StepSpec, path: Path, what: str, fix: str) -> list[Problem]:
    changes = _state(ws, spec)
    if not isinstance(changes, list):
        return []
    return [Problem(scene, path, f"{what} is out of date: {_some(changes)} changed since it was made", fix)]


def _temporal(ws: Workspace, s: str) -> list[Problem]:
    """Clip features, actionness, step timelines (discovered key steps without a task file, as ``run`` does) and
    groundedness against their current inputs; each later one only when what it reads is current."""
    if not any(s in ws.record(stage).items for stage in TEMPORAL) or not scenes.reconstructed_videos(ws, s):
        return []
    from howto3d import discover_cmds, groundedness_cmds, temporal_cmds
    from temporal.tasks import find_task_file

    folder = ws.temporal_dir(s)
    run = _cmd(ws, "run")
    spec = temporal_cmds.features_step(ws, s)
    if _state(ws, spec) is not True:
        return _stale(ws, s, spec, folder / "features.json", "the clip features", run)
    try:
        feats = temporal_cmds.saved_features(ws, s)
    except (InputError, OSError, KeyError, ValueError) as e:
        path = folder / "features.json"
        return [Problem(s, path, f"unreadable clip features ({_reason(e, path)}); `run` makes them again", run)]
    problems = _stale(
        ws,
        s,
        groundedness_cmds.groundedness_step(ws, s, feats),
        folder / "groundedness.json",
        "the groundedness report",
        _cmd(ws, "groundedness", "--scene", s),
    )
    if find_task_file(ws.scene_dir(s)) is None:
        return problems + _stale(
            ws,
            s,
            discover_cmds.discover_step(ws, s, feats, discover_cmds.procedure_conf(ws)),
            folder / "steps",
            "the discovered key steps",
            run,
        )
    spec = temporal_cmds.actionness_step(ws, s, feats)
    if _state(ws, spec) is not True:
        return problems + _stale(ws, s, spec, folder / "actionness", "the actionness", run)
    try:
        act = temporal_cmds.saved_actionness(ws, s, feats)
    except (InputError, OSError, KeyError, ValueError) as e:
        return problems + [
            Problem(
                s, folder / "actionness", f"unreadable actionness ({_reason(e, folder)}); `run` makes it again", run
            )
        ]
    return problems + _stale(
        ws, s, temporal_cmds.steps_step(ws, s, feats, act), folder / "steps", "the step timelines", run
    )


def _grounding(ws: Workspace, scene: str | None, sound: list[str]) -> list[Problem]:
    """The grounding model: trained in each scene's current shared frame (``sound``: scenes whose transforms can
    be read as a frame) and from the current models, transforms and subtitles."""
    meta = ws.grounding_dir / "model" / "grounding.json"
    train = _cmd(ws, "train")
    frames = gquery.trained_frames(ws.grounding_dir)
    trained = frames or {}
    problems, moved = [], set()
    for s in sorted(set(trained) & set(sound)):
        why = scenes.frame_moved(trained[s], scenes.frame_state(ws, s))
        if why:
            moved.add(s)
            problems.append(Problem(s, meta, f"trained in an earlier shared frame of scene {s} ({why})", train))
    if "grounding" not in ws.record("train").items:
        return problems
    try:
        names = grounding_cmds.trainable_scenes(ws)
    except InputError:
        return problems  # nothing to train on any more: `run` says so
    weights = _line_weights(ws, names)
    if weights is False:
        return problems  # the groundedness it is trained from is redone first (reported with the scene)
    step = ws.step(*grounding_cmds.train_step(ws, names, None, weights))
    if step.done and frames is None:
        return problems + [Problem(None, meta, "missing, yet `train` recorded the model", train)]
    by_scene: dict[str | None, list[str]] = {}
    for name in step.changes() or []:
        of = name.split("/")[1] if "/" in name else None
        if name != f"align/{of}" or of not in moved:  # a moved frame is said once, above
            by_scene.setdefault(of, []).append(name)
    return problems + [
        Problem(
            s, meta.parent, f"the grounding model is out of date: {_some(changes)} changed since it was trained", train
        )
        for s, changes in sorted(by_scene.items(), key=lambda kv: kv[0] or "")
        if scene is None or s in (scene, None)
    ]


def _line_weights(ws: Workspace, names: list[str]) -> grounding_cmds.LineWeights | None | Literal[False]:
    """The line weights ``run`` trains with (``grounding.min_groundedness`` > 0), from the saved groundedness;
    ``None`` without a threshold, ``False`` when a scene's groundedness is not current."""
    threshold = ws.config.grounding.min_groundedness
    if threshold <= 0:
        return None
    from howto3d import groundedness_cmds, temporal_cmds

    weights: grounding_cmds.LineWeights = {}
    for s in names:
        try:
            if _state(ws, temporal_cmds.features_step(ws, s)) is not True:
                return False
            feats = temporal_cmds.saved_features(ws, s)
            if _state(ws, groundedness_cmds.groundedness_step(ws, s, feats)) is not True:
                return False
            weights[s] = groundedness_cmds.saved_line_weights(ws, s, scenes.narrations(ws, s), threshold)
        except (InputError, OSError, KeyError, ValueError):
            return False  # unreadable: reported with the scene, and redone before training
    return weights
