"""Step timelines of a scene's own videos: learned, 3D-grounded and fused step scores, DP, evaluation.

Array-level glue between the library pieces for videos that come with subtitles and a task file: narration
becomes step constraints (the only supervision of the step model, no labels), the grounding model's heatmaps
become 3D-grounded scores, actionness is mixed in, and order-constrained DP gives one contiguous segment per step
(timelines, frame F1) whose centre is the step's clip (step recall, CrossTask).

Owns ``steps/model/`` (the step model) and ``steps/<video>.json`` (:class:`Timelines`: tasks, step segments and
every method's clips/labels; discovered key steps are saved in the same shape); nothing else parses them.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, NotRequired, TypedDict, cast

import numpy as np

from recon.io import InputError, ProgressFn, atomic_dir, atomic_write_json, read_json

from .config import StepsConfig
from .dp import align_contiguous, align_one, steps_to_labels, uniform_steps, znorm
from .features import CLIP_SECONDS
from .grounded_scores import from_seen
from .metrics import action_ap, chance_actionness, frame_prf, recall_counts, segment_labels
from .models import StepModel, StepVideo, TrainConfig, train_step_model
from .step_windows import tfidf_embed
from .tasks import TaskFile, step_list, video_tasks

log = logging.getLogger(__name__)

Line = tuple[str, float, float]
"""A narration line: text, start and end (seconds)."""

Method = Literal["uniform", "learned", "grounded", "fused"]
METHODS: tuple[Method, ...] = ("uniform", "learned", "grounded", "fused")
"""Step-score variants localized for every video (the saved timeline is ``fused``)."""


class StepSegment(TypedDict):
    """One step of a timeline: its DP clip and contiguous segment (seconds; ``None`` when the DP gave none)."""

    task: str
    step: str
    label: str
    key_step: NotRequired[int]
    """Discovered key steps: the key step's number (1..k)."""
    clip: int
    start: float | None
    end: float | None
    segments: NotRequired[list[list[float]]]
    """Discovered key steps: every run of the key step, ``[start, end]`` seconds (the longest is the segment)."""


class MethodResult(TypedDict):
    """One score variant's localization: a clip per step (not for discovered key steps) and a label per clip."""

    clips: NotRequired[list[int]]
    labels: list[int]


class Timeline(TypedDict):
    """One video's ``steps/<video>.json``: the ``howto3d steps --json`` contract (``discover``'s key steps have the
    same shape, with ``"task_source": "discovered"`` and ``k`` instead of ``features``)."""

    video: str
    scene: str
    tasks: list[str]
    task_source: str
    clip_seconds: float
    clips: int
    features: NotRequired[list[str]]
    k: NotRequired[int]
    steps: list[StepSegment]
    methods: dict[str, MethodResult]
    frame: NotRequired[dict]
    """The shared frame the features and grounded scores were made in (the caller's record, opaque here)."""


class MethodScore(TypedDict):
    """One score variant on one video: recall hits and frame precision / recall / F1."""

    hits: int
    frame_precision: float
    frame_recall: float
    frame_f1: float


class VideoScores(TypedDict):
    """:func:`evaluate_video`: annotated steps and each localized variant's scores."""

    annotated: int
    uniform: NotRequired[MethodScore]
    learned: NotRequired[MethodScore]
    grounded: NotRequired[MethodScore]
    fused: NotRequired[MethodScore]


class VideoEval(VideoScores):
    tasks: list[str]
    true_tasks: list[str]


class MethodSummary(TypedDict):
    recall: float
    frame_f1: float


class ActionnessScore(TypedDict):
    """Action-vs-background AP next to chance and the chance+trim baseline (:func:`actionness_report`)."""

    ap: float
    chance: float
    chance_trim: float


class SceneEval(TypedDict):
    """A scene of ``eval-steps --json`` (:func:`evaluate_scene`)."""

    videos: dict[str, VideoEval]
    methods: dict[str, MethodSummary]
    annotated: int
    actionness: ActionnessScore | None


def cue_step_similarity(lines: Sequence[tuple[str, float, float]], steps: Sequence[str]) -> np.ndarray:
    """``[L, K]`` TF-IDF cosine of each subtitle cue to each step, divided by the cue's total over the steps:
    an intro that names the whole job ("today we change the plugs and the air filter") matches every step a
    little and no step as much as the cue that narrates one of them."""
    E = tfidf_embed([t for t, _, _ in lines] + list(steps))
    E = E / np.maximum(np.linalg.norm(E, axis=1, keepdims=True), 1e-12)
    sim = E[: len(lines)] @ E[len(lines) :].T
    return sim / np.maximum(sim.sum(1, keepdims=True), 1e-12)


def step_constraints(
    lines: Sequence[tuple[str, float, float]], steps: Sequence[str], T: int, conf: StepsConfig
) -> np.ndarray | None:
    """``M[T, K]`` allowed clips per step: the cue matched to it in order (ordered DP over cues), widened by
    ``constraint_pad`` seconds; ``None`` without narration or when disabled. Unmatched steps stay free.
    With ``constraint_until_next`` a step's window holds until the next matched step's cue starts (the last
    step's for the median of the others), not just while its own cue is spoken."""
    if not conf.use_constraints or not lines or not steps:
        return None
    sim = cue_step_similarity(lines, steps)
    cue = align_one(sim, maximize=True, allow_shared=True)
    M = np.zeros((T, len(steps)), np.uint8)
    named = [k for k, i in enumerate(cue) if sim[i, k] > 0]
    windows = {}
    for k in named:
        _, start, end = lines[cue[k]]
        if conf.constraint_until_next:
            later = [lines[cue[j]][1] for j in named if j > k and lines[cue[j]][1] > end]
            end = min(later) if later else None
        windows[k] = (start, end)
    held = [e - s for s, e in windows.values() if e is not None]
    for k in range(len(steps)):
        if k not in windows:
            M[:, k] = 1
            continue
        start, end = windows[k]
        if end is None:  # the last narrated step: as long as the others hold (an outro is not a step)
            end = lines[cue[k]][2] + float(np.median(held)) if held else float(T)
        a, b = int(np.floor(max(start - conf.constraint_pad, 0))), int(np.ceil(end + conf.constraint_pad))
        M[a : min(max(b, a + 1), T), k] = 1
    return M


def fuse(
    learned: np.ndarray | None, grounded: np.ndarray | None, actionness: np.ndarray | None, conf: StepsConfig
) -> np.ndarray:
    """Standardised learned and grounded scores mixed by ``grounded_weight`` (either alone when the other is
    ``None``), then actionness and the position prior (higher = better)."""
    if learned is None:
        if grounded is None:
            raise ValueError("no step scores to fuse")
        S = znorm(grounded)
    elif grounded is None:
        S = znorm(learned)
    else:
        S = (1 - conf.grounded_weight) * znorm(learned) + conf.grounded_weight * znorm(grounded)
    if actionness is not None and conf.actionness_weight > 0:
        S = (1 - conf.actionness_weight) * znorm(S) + conf.actionness_weight * znorm(actionness)[:, None]
    if conf.position_weight > 0:
        S = (1 - conf.position_weight) * znorm(S) + conf.position_weight * znorm(position_prior(*S.shape))
    return S


def position_prior(T: int, K: int, width: float = 0.5) -> np.ndarray:
    """``[T, K]`` log-Gaussian in relative time around each step's uniform slot, ``width`` slots wide (sigma)."""
    t = (np.arange(T) + 0.5)[:, None] / T
    mu = (np.arange(K) + 0.5)[None] / K
    return -0.5 * ((t - mu) / (width / K)) ** 2


def localize(
    S: np.ndarray | None,
    T: int,
    K: int,
    mask: np.ndarray | None,
    conf: StepsConfig,
    actionness: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Per-clip labels ``y[T]`` in ``0..K`` (A2: one contiguous run per step, in order) and one clip per step
    (``[K]``, the centre of its run); ``S=None`` is the uniform baseline. ``actionness`` makes background
    cheaper where it is low (``conf.background_actionness``)."""
    if S is None:
        clips = uniform_steps(T, K)
        y = np.zeros(T, np.int64)
        bounds = np.round(np.linspace(0, T, K + 1)).astype(int)
        for k in range(K):
            y[bounds[k] : max(bounds[k + 1], bounds[k] + 1)] = k + 1
        return clips, y
    Z = znorm(S)
    if T < K:  # too short for one run per step: A1 alone, steps may share clips
        return align_one(Z, maximize=True, mask=mask, allow_shared=True, lam=conf.constraint_penalty), np.zeros(
            T, np.int64
        )
    bg: float | np.ndarray = conf.background
    if actionness is not None and conf.background_actionness > 0:
        bg = conf.background + conf.background_actionness * znorm(actionness)
    y = align_contiguous(-Z, bg_cost=bg, mask=mask, lam=conf.constraint_penalty)
    return segment_centres(y, K), y


def segment_centres(y: np.ndarray, K: int) -> np.ndarray:
    """``[K]`` the middle clip of each step's run in ``y`` (A2 gives every step a run).

    The step's clip for recall: a run is supported by all its clips' scores, so its centre is steadier than
    A1's single best clip, which jumps to noise peaks when steps on one part score alike (six synthetic test
    worlds: mean recall grounded 0.55 → 0.66, fused 0.50 → 0.63, learned 0.37 → 0.48; the score-weighted
    median of the run, 0.67 / 0.57 / 0.44, and the run's best clip, 0.57 / 0.44 / 0.37, did worse)."""
    runs = [np.flatnonzero(y == k + 1) for k in range(K)]
    return np.array([idx[len(idx) // 2] for idx in runs], np.int64)


def segments(y: np.ndarray, steps: Sequence[tuple[str, str]], clips: np.ndarray) -> list[StepSegment]:
    """Per step its task, phrase, DP clip and contiguous segment (seconds; ``None`` if the DP gave none)."""
    out: list[StepSegment] = []
    for k, (task, step) in enumerate(steps):
        idx = np.flatnonzero(y == k + 1)
        out.append(
            {
                "task": task,
                "step": step,
                "label": step,
                "clip": int(clips[k]),
                "start": float(idx[0]) if len(idx) else None,
                "end": float(idx[-1] + 1) if len(idx) else None,
            }
        )
    return out


def truth_labels(gt_steps: Sequence[dict], steps: Sequence[tuple[str, str]], T: int) -> tuple[np.ndarray, int]:
    """Ground truth in the predicted step vocabulary: ``y[T]`` (0 = background or a step not predicted)
    and how many ground-truth steps have a clip; annotated steps the video was not assigned count as missed."""
    index = {s: k + 1 for k, s in enumerate(steps)}
    y = np.zeros(T, np.int64)
    for s in gt_steps:
        a, b = int(np.floor(s["start"])), int(np.ceil(s["end"]))
        if b > a:
            y[a : min(b, T)] = index.get((s["task"], s["step"]), 0)
    return y, sum(int(np.ceil(s["end"])) > int(np.floor(s["start"])) for s in gt_steps)


def truth_matrix(gt_steps: Sequence[dict], steps: Sequence[tuple[str, str]], T: int) -> np.ndarray:
    """``Y[T, K]`` 0/1 ground truth of the predicted steps (CrossTask's dense annotation, for recall)."""
    index = {s: k for k, s in enumerate(steps)}
    Y = np.zeros((T, len(steps)), np.uint8)
    for s in gt_steps:
        k = index.get((s["task"], s["step"]))
        if k is not None:
            Y[int(np.floor(s["start"])) : min(int(np.ceil(s["end"])), T), k] = 1
    return Y


def evaluate_video(
    gt_steps: Sequence[dict],
    steps: Sequence[tuple[str, str]],
    clips: Mapping[str, np.ndarray],
    labels: Mapping[str, np.ndarray],
    T: int,
) -> VideoScores:
    """Per method: recall hits / annotated steps and frame precision / recall / F1 of the segments."""
    y_true, n = truth_labels(gt_steps, steps, T)
    # Annotated clips of steps outside the predicted list are still foreground the prediction missed.
    fg = np.zeros(T, bool)
    for s in gt_steps:
        fg[int(np.floor(s["start"])) : min(int(np.ceil(s["end"])), T)] = True
    y_true = np.where(fg & (y_true == 0), -1, y_true)
    Y_true = truth_matrix(gt_steps, steps, T)
    out: VideoScores = {"annotated": n}
    for m in clips:
        if m not in METHODS:  # a timeline saves only these
            continue
        p, r, f = frame_prf(y_true, labels[m])
        out[m] = {
            "hits": recall_counts(Y_true, steps_to_labels(clips[m], T))[0],
            "frame_precision": p,
            "frame_recall": r,
            "frame_f1": f,
        }
    return out


def narrated_clips(lines: Sequence[tuple[str, float, float]], T: int) -> np.ndarray:
    """``[T]`` 1 where a subtitle cue is spoken during the clip."""
    y = np.zeros(T)
    for _, start, end in lines:
        y[int(np.floor(start)) : min(int(np.ceil(end)), T)] = 1
    return y


INTRO_OUTRO = 0.3
"""Fraction of a video at each end taken as intro/outro by the orientation cue: how-to videos start and end with
talk and overviews ([002]: "chance + trim@0.3" beats chance on COIN and CrossTask)."""


def middle_clips(T: int) -> np.ndarray:
    """``[T]`` 1 outside the intro and outro (``INTRO_OUTRO`` of the video at each end): the chance+trim baseline."""
    t = (np.arange(T) + 0.5) / T
    return ((t > INTRO_OUTRO) & (t < 1 - INTRO_OUTRO)).astype(float)


def action_cue(lines: Sequence[tuple[str, float, float]], T: int) -> np.ndarray:
    """``[T]`` label-free guess of where the action is: the middle of the video, averaged with the narrated clips
    when there are subtitles (people talk while they work). Weak alone, used to orient actionness."""
    return 0.5 * (middle_clips(T) + narrated_clips(lines, T)) if lines else middle_clips(T)


def with_prior(actionness: np.ndarray, weight: float) -> np.ndarray:
    """Oriented actionness of one video mixed with the intro/outro prior (both standardised)."""
    if weight <= 0:
        return actionness
    return (1 - weight) * znorm(actionness) + weight * znorm(middle_clips(len(actionness)))


def orientation(actionness: Sequence[np.ndarray], cues: Sequence[np.ndarray]) -> float:
    """+1 or -1: the sign that makes actionness agree with the label-free action cues (``action_cue``).

    Order verification finds the clips that carry temporal order; in hand-held how-to videos that can be the
    camera moving between parts rather than the work, so which end of the learned score is action is left to
    two weak cues that vote together: the narration alone picked the wrong sign on 4 of 9 synthetic scenes, the
    intro/outro prior alone on 1, both together on none (README).
    """
    a, c = np.concatenate(actionness), np.concatenate(cues)
    if a.std() < 1e-12 or c.std() < 1e-12:
        return 1.0
    return 1.0 if np.corrcoef(a, c)[0, 1] >= 0 else -1.0


def actionness_report(actionness: Sequence[np.ndarray], gt_steps: Sequence[Sequence[dict]]) -> ActionnessScore:
    """Action-vs-background AP (0.2 s segments), chance (the fraction of action segments) and the AP of the
    spec's chance+trim baseline (seeded random scores, intro and outro sent to background)."""
    ivs = [[(1, s["start"], s["end"]) for s in g] for g in gt_steps]
    labels = np.concatenate([segment_labels(iv, len(a)) for a, iv in zip(actionness, ivs, strict=True)])
    rng = np.random.default_rng(0)
    trim = [chance_actionness(len(a), rng, INTRO_OUTRO) for a in actionness]
    return {"ap": action_ap(list(actionness), ivs), "chance": float(labels.mean()), "chance_trim": action_ap(trim, ivs)}


# ----------------------------------------------------------------------------- the stage


SeenFn = Callable[[str, list[str], int], np.ndarray | None]
"""``seen(video, step_phrases, T) -> M[T, K]``: per clip the share of each phrase's grounding heatmap the camera
looks at (:func:`temporal.grounded_scores.seen_mass`), or ``None`` when the video has none (not in the shared
reconstruction, no grounding model): how the workspace hands the grounding stage in. It gives the 3D-grounded
step scores and, for a video whose narration does not say its task, which task's places it shows."""


@dataclass
class StepInputs:
    """Everything step localization of one scene reads, found by the caller (the workspace adapter)."""

    features: dict[str, np.ndarray]
    """``X[T, D]`` per video (every video of the scene trains the step model)."""
    lines: Mapping[str, Sequence[Line]]
    """Narration per video (``[]`` without subtitles): the model's only supervision, and the task guess."""
    task_file: TaskFile
    actionness: Mapping[str, np.ndarray] = field(default_factory=dict)
    """Per-clip actionness per video (missing videos go without)."""
    seen: SeenFn | None = None
    task_override: Mapping[str, list[str]] = field(default_factory=dict)
    """Tasks given on the command line, per video (``--task``)."""
    feature_kinds: list[str] = field(default_factory=list)
    """Recorded in every result (which clip features were used)."""
    scene: str = ""
    frame: dict | None = None
    """The caller's record of the shared frame the features' gaze and the grounded scores were made in, copied
    into every result (``"frame"``) so a reader can tell when the frame has moved since; opaque here."""


@dataclass
class Timelines:
    """Step timelines of a scene's videos, ``steps/<video>.json`` each, and the step model behind them."""

    videos: dict[str, Timeline]
    """Per video: ``{"video", "scene", "tasks", "task_source", "clip_seconds", "clips", "features", "steps",
    "methods"}`` (the JSON contract of ``howto3d steps --json``)."""
    model: StepModel | None = None

    def save(self, folder: Path) -> None:
        if self.model is not None:
            with atomic_dir(folder / "model") as tmp:
                self.model.save(tmp)
        for v, r in self.videos.items():
            atomic_write_json(folder / f"{v}.json", r)

    @staticmethod
    def load(folder: Path, videos: Sequence[str] | None = None) -> dict[str, Timeline]:
        """Saved results per video: ``videos`` (each must be there) or every saved one."""
        if videos is None:
            videos = sorted(p.stem for p in folder.glob("*.json"))
        out: dict[str, Timeline] = {}
        for v in videos:
            r = read_json(folder / f"{v}.json")
            if not isinstance(r, dict) or not {"steps", "tasks", "clips"} <= set(r):
                raise InputError(f"{folder / f'{v}.json'}: not a step timeline; delete it to recompute")
            out[v] = cast(Timeline, r)
        return out


def _looks(inputs: StepInputs, video: str) -> Callable[[list[str]], np.ndarray | None] | None:
    """What the video's cameras see of given phrases' places (``M[T, K]``), for guessing its task by looks."""
    seen, T = inputs.seen, len(inputs.features[video])
    return None if seen is None else lambda phrases: seen(video, phrases, T)


def main(conf: StepsConfig, inputs: StepInputs, progress: ProgressFn | None = None) -> Timelines:
    """Step timelines of every video of the scene that gets a task.

    The step model is trained on all the videos from their narration constraints only; each video is then
    localized with four score variants (``METHODS``): the uniform baseline, learned, 3D-grounded (when
    ``inputs.seen`` gives scores) and fused, and the fused DP is its timeline.
    """
    feats, lines, tf = inputs.features, inputs.lines, inputs.task_file
    assigned: dict[str, tuple[list[str], str]] = {}
    for v in sorted(feats):
        tasks, source = video_tasks(
            tf,
            v,
            [t for t, _, _ in lines.get(v, [])],
            inputs.task_override.get(v),
            _looks(inputs, v) if conf.task_by_looks else None,
        )
        if not tasks:
            log.warning(
                "%s/%s: skipped: its narration matches no task of %s; give --task or a 'videos' entry",
                inputs.scene,
                v,
                tf.path.name,
            )
            continue
        assigned[v] = (tasks, source)
    if not assigned:
        raise InputError(f"{tf.path}: no video of scene {inputs.scene!r} could be given a task; add a 'videos' table")
    task_steps: dict[str, list[str]] = {}
    masks: dict[str, np.ndarray | None] = {}
    train = []
    for v, (tasks, _) in assigned.items():
        key = "+".join(tasks)
        task_steps[key] = [s for _, s in step_list(tf, tasks)]
        masks[v] = step_constraints(lines.get(v, []), task_steps[key], len(feats[v]), conf)
        train.append(StepVideo(key, feats[v], masks[v]))
    model = train_step_model(
        train,
        task_steps,
        TrainConfig(epochs=conf.epochs, pretrain_epochs=conf.pretrain_epochs, seed=conf.seed),
        progress,
    )
    out: dict[str, Timeline] = {}
    for v, (tasks, source) in assigned.items():
        key, seq = "+".join(tasks), step_list(tf, tasks)
        X, T, K, mask, act = feats[v], len(feats[v]), len(seq), masks[v], inputs.actionness.get(v)
        learned = model.log_probs(X, key)
        M = inputs.seen(v, [s for _, s in seq], T) if inputs.seen is not None else None
        grounded = None if M is None else from_seen(M)
        scores = {
            "uniform": None,
            "learned": fuse(learned, None, act, conf),
            "grounded": None if grounded is None else fuse(None, grounded, act, conf),
            "fused": fuse(learned, grounded, act, conf),
        }
        methods: dict[str, MethodResult] = {}
        for m, S in scores.items():
            if m == "grounded" and S is None:
                continue
            clips, y = localize(S, T, K, None if m == "uniform" else mask, conf, act)
            methods[m] = {"clips": clips.tolist(), "labels": y.tolist()}
        fused = methods["fused"]
        out[v] = {
            "video": v,
            "scene": inputs.scene,
            "tasks": tasks,
            "task_source": source,
            "clip_seconds": CLIP_SECONDS,
            "clips": T,
            "features": list(inputs.feature_kinds),
            "steps": segments(np.array(fused["labels"]), seq, np.array(fused["clips"])),
            "methods": methods,
        }
        if inputs.frame is not None:
            out[v]["frame"] = inputs.frame
    return Timelines(out, model)


def evaluate_scene(
    truth: Mapping[str, dict],
    videos: Sequence[str],
    saved: Mapping[str, Timeline],
    actionness: Mapping[str, np.ndarray],
    rerun: str = "",
) -> tuple[SceneEval, list[str]]:
    """A scene's step timelines and actionness against ground truth ``{video: {"tasks", "steps"}}``.

    Returns the scene report (per video and pooled per method: CrossTask recall, frame F1; actionness AP next
    to its baselines) and what was skipped and why; ``rerun`` is the command that makes missing timelines.
    """
    out: dict[str, VideoEval] = {}
    skipped: list[str] = []
    a_list: list[np.ndarray] = []
    g_list: list[list[dict]] = []
    for v in videos:
        if v not in truth:
            skipped.append(f"{v}: no ground truth for this video")
            continue
        if v in actionness:
            a_list.append(actionness[v])
            g_list.append(truth[v]["steps"])
        if v not in saved:
            skipped.append(f"{v}: no step results; run `{rerun} --video {v}`")
            continue
        r = saved[v]
        if r.get("task_source") == "discovered":
            skipped.append(
                f"{v}: discovered key steps have no step names to score (`howto3d crosstask discover` "
                "evaluates discovery on CrossTask-format data)"
            )
            continue
        seq = [(st["task"], st["step"]) for st in r["steps"]]
        ev = evaluate_video(
            truth[v]["steps"],
            seq,
            {m: np.array(x["clips"]) for m, x in r["methods"].items()},
            {m: np.array(x["labels"]) for m, x in r["methods"].items()},
            r["clips"],
        )
        out[v] = {"tasks": r["tasks"], "true_tasks": truth[v]["tasks"], **ev}
    methods = [m for m in METHODS if out and all(m in e for e in out.values())]
    total = sum(e["annotated"] for e in out.values())
    summary: dict[str, MethodSummary] = {
        m: {
            "recall": sum(e[m]["hits"] for e in out.values()) / max(total, 1),
            "frame_f1": float(np.mean([e[m]["frame_f1"] for e in out.values()])),
        }
        for m in methods
    }
    return {
        "videos": out,
        "methods": summary,
        "annotated": total,
        "actionness": actionness_report(a_list, g_list) if a_list else None,
    }, skipped
