"""Evaluation against a synthetic world's ground truth (``ground_truth.json``; stages never read it), and on the
user's own videos from their clicked keypoints alone (``eval_user_transfer``, ``user_parts``).

Alignment accuracy: one Sim(3) fit of all shared-frame camera centres to their true centres, then
per-video centre and rotation errors in metres/degrees. Keypoint transfer ([001] §5.5.1): landmarks
"clicked" (projected) in frames of a source video are triangulated, transferred and compared with their
true 3D positions; PCK over 1–20 cm, through the alignment graph and over direct edges only.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, NotRequired, TypedDict

import numpy as np
import pycolmap

from howto3d.workspace import Workspace
from recon.align import Alignment
from recon.io import InputError, read_json
from recon.scene import RegisteredFrame, SharedScene
from recon.transfer import FORMAT, Localize, observe, parse_observations, triangulate

THRESHOLDS_CM = (1, 2, 3, 5, 8, 10, 15, 20)


class CameraError(TypedDict):
    """One video's cameras against the truth after one global Sim(3) fit (:func:`camera_errors`)."""

    frames: int
    centre_mean_m: float
    centre_max_m: float
    rotation_max_deg: float


class TransferScore(TypedDict):
    """Keypoint-transfer PCK against the truth (:func:`eval_transfer`; PCK keyed ``"<t>cm"``)."""

    keypoints: int
    pck_shared: dict[str, float]
    pck_graph: dict[str, float]
    pck_direct: dict[str, float]
    pairs_graph: int
    pairs_direct: int
    median_error_cm: float | None


class AlignmentAccuracy(TypedDict):
    """``eval-transfer --json`` on a synthetic world: per-video camera errors and keypoint transfer."""

    cameras: dict[str, CameraError]
    transfer: TransferScore


class StepTruth(TypedDict):
    """One ``guide`` step against the truth (:func:`eval_guide`)."""

    step: str
    part: str
    error_m: float | None
    moment_shows: bool
    moment_inside: bool


class GuideScore(TypedDict):
    """A ``guide`` against the truth (:func:`eval_guide`)."""

    task: str
    steps: list[StepTruth]
    at_m: float
    placed: float
    moment_shows: float
    moment_inside: float


class Skipped(TypedDict):
    """A keypoint left out of ``eval-transfer --annotations`` (``video``: when one video's clicks failed)."""

    video: NotRequired[str]
    name: str
    why: str


class KeypointScore(TypedDict):
    """One keypoint clicked in several videos: its pairs' PCK and median errors."""

    videos: list[str]
    pairs: int
    pck: dict[str, float]
    median_error: float
    median_error_px: float | None


class PixelScore(TypedDict):
    """The reprojection check: the click vs the other videos' point projected there, in video pixels."""

    thresholds: list[int]
    projections: int
    pck: dict[str, float]
    median_error: float | None


class UserTransferReport(TypedDict):
    """``eval-transfer --annotations --json`` (docs/cli.md, "Measure on your own videos")."""

    scene: str
    units: str
    error_units: str
    scene_size: float
    thresholds: list[float]
    pairs: int
    pck: dict[str, float]
    median_error: float | None
    pixels: PixelScore
    keypoints: dict[str, KeypointScore]
    skipped: list[Skipped]


def _gt_frames(gt: dict, video: str) -> dict[float, np.ndarray]:
    frames = gt["videos"].get(video, {}).get("frames", [])  # a video the user added has no ground truth
    return {
        round(f["time"], 3): np.array(f["cam_from_world"]) for f in frames if f["cam_from_world"] is not None
    }  # inserts (off-car shots) have no pose in the world


def load_gt(path) -> dict:
    if not path.exists():
        raise InputError(f"{path}: no ground truth; evaluation needs a synthetic workspace (`howto3d synth`)")
    return read_json(path)


def fit_to_world(
    frames: list[RegisteredFrame], gt: dict, frame_from_shared: pycolmap.Sim3d | None = None
) -> pycolmap.Sim3d:
    """Sim(3) from the frames' coordinate frame to the world, fitted on camera centres against the true ones.

    ``frame_from_shared`` re-expresses the shared-frame centres first (e.g. in one video's own model frame).
    """
    truth = {v: _gt_frames(gt, v) for v in {f.video for f in frames}}
    src, tgt = [], []
    for f in frames:
        P = truth[f.video].get(round(f.time, 3))
        if P is not None:
            src.append(f.center)
            tgt.append(-P[:, :3].T @ P[:, 3])
    if len(src) < 3:
        raise InputError("fewer than 3 registered frames match ground-truth timestamps; cannot fit a Sim(3)")
    centres = np.array(src) if frame_from_shared is None else frame_from_shared * np.array(src)
    fit = pycolmap.estimate_sim3d(centres, np.array(tgt))
    if fit is None:
        raise InputError("the registered cameras' centres are degenerate (e.g. all on one line); cannot fit a Sim(3)")
    return fit


def camera_errors(shared: SharedScene, gt: dict) -> dict[str, CameraError]:
    """Per video: camera-centre error (m) and rotation error (deg) after one global Sim(3) fit."""
    world_from_shared = fit_to_world(shared.frames, gt)
    R_fit = world_from_shared.rotation.matrix()
    out: dict[str, CameraError] = {}
    for v in shared.videos:
        truth = _gt_frames(gt, v)
        frames = [f for f in shared.frames_of(v) if round(f.time, 3) in truth]
        if not frames:
            continue
        P = [truth[round(f.time, 3)] for f in frames]
        c_err = [
            float(np.linalg.norm(world_from_shared * f.center[None] - (-p[:, :3].T @ p[:, 3])))
            for f, p in zip(frames, P, strict=True)
        ]
        r_err = [
            np.degrees(np.arccos(np.clip((np.trace(p[:, :3] @ (f.cam_from_world[:, :3] @ R_fit.T).T) - 1) / 2, -1, 1)))
            for f, p in zip(frames, P, strict=True)
        ]
        out[v] = {
            "frames": len(frames),
            "centre_mean_m": float(np.mean(c_err)),
            "centre_max_m": float(np.max(c_err)),
            "rotation_max_deg": float(np.max(r_err)),
        }
    return out


def clicks(gt: dict, video: str, position: np.ndarray, frames, n: int = 4) -> list[dict]:
    """Simulated user clicks: the true projection of a 3D point in ``n`` well-spread registered frames."""
    gts = _gt_frames(gt, video)
    K = {round(f["time"], 3): np.array(f["K"]) for f in gt["videos"][video]["frames"]}
    w, h = gt["videos"][video]["width"], gt["videos"][video]["height"]
    seen = []
    for f in frames:
        key = round(f.time, 3)
        Xc = gts[key][:, :3] @ position + gts[key][:, 3]
        if Xc[2] <= 0:
            continue
        u, v = (K[key] @ (Xc / Xc[2]))[:2]
        if 0 <= u < w and 0 <= v < h:
            seen.append({"time": f.time, "xy": [float(u), float(v)]})
    if len(seen) < 2:
        return []
    return [seen[i] for i in np.unique(np.linspace(0, len(seen) - 1, n).round().astype(int))]


def pck(errors_m: list[float], thresholds_cm=THRESHOLDS_CM) -> dict[str, float]:
    e = np.asarray(errors_m) * 100
    return {f"{t}cm": float((e <= t).mean()) if len(e) else 0.0 for t in thresholds_cm}


def eval_transfer(shared: SharedScene, gt: dict, align_dir: Path) -> TransferScore:
    """Keypoint-transfer PCK: shared frame (one global fit), and per video pair via the graph vs direct edges."""
    world_from_shared = fit_to_world(shared.frames, gt)
    alignment = Alignment.load(align_dir) if Alignment.is_done(align_dir) else None
    shared_from = alignment.shared_from_video if alignment else {}
    edges = alignment.accepted_edges() if alignment else {}
    # A per-video world fit measures how well a point lands in *that video's* model (graph vs direct).
    world_from_video = {
        v: fit_to_world(shared.frames_of(v), gt, shared_from[v].inverse()) for v in shared.videos if v in shared_from
    }
    global_err, graph_err, direct_err = [], [], []
    for lm in gt["landmarks"]:
        X_gt = np.array(lm["position"])
        for s in shared.videos:
            obs = clicks(gt, s, X_gt, shared.frames_of(s))
            if not obs:
                continue
            X = triangulate(shared, s, obs, name=lm["name"])
            global_err.append(float(np.linalg.norm(world_from_shared * X[None] - X_gt)))
            for t in shared.videos:
                if t == s or t not in world_from_video:
                    continue
                X_t = shared_from[t].inverse() * X[None]
                graph_err.append(float(np.linalg.norm(world_from_video[t] * X_t - X_gt)))
                if (s, t) in edges:
                    X_s = shared_from[s].inverse() * X[None]
                    direct_err.append(float(np.linalg.norm(world_from_video[t] * (edges[(s, t)] * X_s) - X_gt)))
    return {
        "keypoints": len(global_err),
        "pck_shared": pck(global_err),
        "pck_graph": pck(graph_err),
        "pck_direct": pck(direct_err),
        "pairs_graph": len(graph_err),
        "pairs_direct": len(direct_err),
        "median_error_cm": float(np.median(global_err) * 100) if global_err else None,
    }


def world_from_shared(ws: Workspace, scene: str, shared: SharedScene) -> pycolmap.Sim3d | None:
    """Synthetic worlds only: the metric Sim(3) from the shared frame to the ground-truth world (metres).

    Fitted on all registered camera centres against their ground-truth centres; ``None`` without ground truth.
    """
    path = ws.ground_truth_path(scene)
    if not path.exists():
        return None
    try:
        return fit_to_world(shared.frames, read_json(path))
    except InputError:
        return None


def moment_shows(gt: dict, moment: dict, part: str, margin: float = 0.05) -> bool:
    """Whether the true camera of ``moment``'s best frame (``video``, ``time``) sees ``part`` (that video's
    position of it) in front of it and inside the image, ``margin`` of its size from the border."""
    truth = gt["videos"].get(moment["video"], {})
    frames = truth.get("frames", [])
    f = min(frames, key=lambda f: abs(f["time"] - moment["time"])) if frames else None
    if f is None or f["cam_from_world"] is None or part not in truth.get("parts", {}):
        return False
    P = np.asarray(f["cam_from_world"], float)
    x = P[:, :3] @ np.asarray(truth["parts"][part], float) + P[:, 3]
    if x[2] <= 0:
        return False
    u, v = (np.asarray(f["K"], float) @ (x / x[2]))[:2]
    w, h = truth["width"], truth["height"]
    return bool(margin * w <= u <= (1 - margin) * w and margin * h <= v <= (1 - margin) * h)


def eval_guide(gt: dict, world_from_shared: pycolmap.Sim3d, guide: Mapping[str, Any], at: float = 0.3) -> GuideScore:
    """A ``guide`` result against the truth: per step, the distance (m) of its point to the part the step works on
    (the mean of that part's positions in the videos performing it), whether its top moment shows the part (in
    front of the true camera and inside the image, 5 % margin) and lies inside the step's true time span in its
    video. Summary: the share of steps within ``at`` m, and of top moments showing / inside."""
    rows: list[StepTruth] = []
    for st in guide["steps"]:
        truth = [
            (v, s)
            for v, r in gt["videos"].items()
            for s in r.get("steps", [])
            if s["task"] == guide["task"] and s["step"] == st["step"]
        ]
        if not truth:
            continue
        part = truth[0][1]["part"]
        where = np.mean([gt["videos"][v]["parts"][part] for v, _ in truth], axis=0)
        row: StepTruth = {
            "step": st["step"],
            "part": part,
            "error_m": None,
            "moment_shows": False,
            "moment_inside": False,
        }
        if st["point"] is not None:
            row["error_m"] = float(
                np.linalg.norm(np.asarray(world_from_shared * np.array([st["point"]])).reshape(3) - where)
            )
        if st["moments"]:
            m = st["moments"][0]
            spans = [s for v, s in truth if v == m["video"]]
            row["moment_inside"] = any(s["start"] <= m["time"] <= s["end"] for s in spans)
            row["moment_shows"] = moment_shows(gt, m, part)
        rows.append(row)
    n = max(len(rows), 1)
    return {
        "task": guide["task"],
        "steps": rows,
        "at_m": at,
        "placed": sum(r["error_m"] is not None and r["error_m"] <= at for r in rows) / n,
        "moment_shows": sum(r["moment_shows"] for r in rows) / n,
        "moment_inside": sum(r["moment_inside"] for r in rows) / n,
    }


# ---- on the user's own videos: no ground truth, only their clicks -------------------------------------------

USER_THRESHOLDS_CM = THRESHOLDS_CM
USER_THRESHOLDS_SIZE = (0.005, 0.01, 0.02, 0.03, 0.05, 0.08, 0.1, 0.15)
"""Without a metric frame, thresholds are these fractions of the scene's robust size (median distance of its
points to their median), so they mean the same on any scene."""
PIXEL_THRESHOLDS = (5, 10, 20, 50)
"""Pixel thresholds of the reprojection check, in the displayed video's pixels."""


def read_annotations(paths: list[Path], videos: list[str]) -> dict[str, dict]:
    """The user's clicks per video: each file (or each ``*.json`` of a folder) is one video's keypoints in the
    ``transfer`` input format; the video is the file's ``"video"`` field, else its stem (``video_00.json``)."""
    files: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            found = sorted(p.glob("*.json"))
            if not found:
                raise InputError(
                    f"{p}: no *.json annotation files; write one per video (<video>.json) in the "
                    f"`transfer` input format"
                )
            files += found
        elif p.is_file():
            files.append(p)
        else:
            raise InputError(f"{p}: no such annotation file or folder")
    out: dict[str, dict] = {}
    for f in files:
        data = read_json(f)
        if not isinstance(data, dict) or not isinstance(data.get("keypoints"), list):
            raise InputError(f"{f}: {FORMAT}")
        video = str(data.get("video", f.stem))
        if video not in videos:
            raise InputError(
                f"{f}: video {video!r} is not aligned in the scene (aligned: {', '.join(videos)}); "
                'name the file <video>.json or add "video": NAME'
            )
        if video in out:
            raise InputError(f"{f}: a second annotation file for video {video!r}; keep one file per video")
        out[video] = data
    return out


def robust_size(points: np.ndarray) -> float:
    """Median distance of the points to their median: a scene's size that a few far outliers do not change."""
    return float(np.median(np.linalg.norm(points - np.median(points, axis=0), axis=1))) if len(points) else 1.0


def _pck_at(errors: list[float], thresholds) -> dict[str, float]:
    e = np.asarray(errors, float)
    return {f"{t:g}": round(float((e <= t).mean()), 4) if len(e) else 0.0 for t in thresholds}


def eval_user_transfer(
    shared: SharedScene,
    annotations: dict[str, dict],
    units: str = "model",
    thresholds: list[float] | None = None,
    metres_per_unit: float | None = None,
    localize_for: Callable[[str], Localize | None] | None = None,
) -> UserTransferReport:
    """Keypoint transfer measured on the user's own clicks ([001] §5.5.1, without ground truth).

    Every keypoint is triangulated in every video it was clicked in (each video's own cameras, in the shared
    frame). For each keypoint seen in ≥ 2 videos and each pair of them: the 3D distance between the two
    triangulations (what a transfer through the alignment would get wrong, plus both videos' click noise), and
    the pixel distance between the user's click in one video and the other video's point projected there.
    Distances are in centimetres when the frame is metric (``units == "metres"``, or ``metres_per_unit`` given:
    a known scale), else in model units with ``thresholds`` defaulting to fractions of the scene's size.
    """
    metric = units == "metres" or metres_per_unit is not None
    to_out = (metres_per_unit or 1.0) * 100 if metric else 1.0
    size = robust_size(shared.points)
    if thresholds is None:
        thresholds = list(USER_THRESHOLDS_CM) if metric else [round(f * size, 6) for f in USER_THRESHOLDS_SIZE]
    points: dict[str, dict[str, np.ndarray]] = {}
    used: dict[str, dict[str, list]] = {}
    skipped: list[Skipped] = []
    for video, data in sorted(annotations.items()):
        localize = localize_for(video) if localize_for else None
        for i, kp in enumerate(data["keypoints"]):
            name = str(kp.get("name", f"keypoint_{i}")) if isinstance(kp, dict) else f"keypoint_{i}"
            try:
                if not isinstance(kp, dict):
                    raise InputError(f"keypoint {i} is not an object; {FORMAT}")
                X = triangulate(shared, video, kp.get("observations", []), name=name, localize=localize)
                seen, _ = observe(shared, video, parse_observations(kp["observations"], name), localize=localize)
            except InputError as e:
                skipped.append({"video": video, "name": name, "why": str(e)})
                continue
            points.setdefault(name, {})[video] = X
            used.setdefault(name, {})[video] = seen
    errors_3d: list[float] = []
    errors_px: list[float] = []
    per_kp: dict[str, KeypointScore] = {}
    for name, by_video in sorted(points.items()):
        vids = sorted(by_video)
        if len(vids) < 2:
            skipped.append({"name": name, "why": f"clicked (with a known camera) in one video only ({vids[0]})"})
            continue
        e3 = [
            float(np.linalg.norm(by_video[a] - by_video[b])) * to_out for i, a in enumerate(vids) for b in vids[i + 1 :]
        ]
        epx = []
        for s in vids:
            for t in vids:
                if s == t:
                    continue
                for _, frame, xy, _ in used[name][t]:
                    proj, depth = frame.project(by_video[s][None])
                    if depth[0] > 0:
                        epx.append(float(np.linalg.norm((proj[0] - xy) * frame.video_scale)))
        errors_3d += e3
        errors_px += epx
        per_kp[name] = {
            "videos": vids,
            "pairs": len(e3),
            "pck": _pck_at(e3, thresholds),
            "median_error": round(float(np.median(e3)), 4),
            "median_error_px": round(float(np.median(epx)), 2) if epx else None,
        }
    return {
        "scene": shared.scene,
        "units": "metres" if metric else "model",
        "error_units": "cm" if metric else "model",
        "scene_size": round(size * to_out, 6),
        "thresholds": list(thresholds),
        "pairs": len(errors_3d),
        "pck": _pck_at(errors_3d, thresholds),
        "median_error": round(float(np.median(errors_3d)), 4) if errors_3d else None,
        "pixels": {
            "thresholds": list(PIXEL_THRESHOLDS),
            "projections": len(errors_px),
            "pck": _pck_at(errors_px, PIXEL_THRESHOLDS),
            "median_error": round(float(np.median(errors_px)), 2) if errors_px else None,
        },
        "keypoints": per_kp,
        "skipped": skipped,
    }


PARTS_FORMAT = (
    'parts JSON must look like {"parts": {"dipstick": [x, y, z], "battery": {"video": "video_00", '
    '"observations": [{"time": 3.2, "xy": [u, v]}, ...]}}}: a point in the shared frame, or clicks in '
    "frames of one video (triangulated as `transfer` does)"
)


def user_parts(
    shared: SharedScene, path: Path, localize_for: Callable[[str], Localize | None] | None = None
) -> dict[str, np.ndarray]:
    """The user's part positions in the shared frame: given as points, or triangulated from their clicks."""
    data = read_json(path)
    parts = data.get("parts") if isinstance(data, dict) else None
    if not isinstance(parts, dict) or not parts:
        raise InputError(f"{path}: {PARTS_FORMAT}")
    out = {}
    for name, value in parts.items():
        if isinstance(value, list):
            xyz = np.asarray(value, float) if all(isinstance(x, int | float) for x in value) else np.zeros(0)
            if xyz.shape != (3,) or not np.isfinite(xyz).all():
                raise InputError(f"{path}: part {name!r}: {value!r} is not a point [x, y, z]; {PARTS_FORMAT}")
            out[name] = xyz
        elif isinstance(value, dict) and "video" in value and "observations" in value:
            video = str(value["video"])
            if video not in shared.videos:
                raise InputError(
                    f"{path}: part {name!r}: video {video!r} is not aligned in scene {shared.scene!r} "
                    f"(aligned: {', '.join(shared.videos)})"
                )
            try:
                out[name] = triangulate(
                    shared,
                    video,
                    value["observations"],
                    name=name,
                    localize=localize_for(video) if localize_for else None,
                )
            except InputError as e:
                raise InputError(f"{path}: {e}") from None
        else:
            raise InputError(f"{path}: part {name!r}: {PARTS_FORMAT}")
    return out


def user_queries(path: Path, parts: dict[str, np.ndarray]) -> dict[str, list[str]]:
    """``{part: [texts]}`` from the user's queries file, every part known to the parts file."""
    data = read_json(path)
    if (
        not isinstance(data, dict)
        or not data
        or not all(
            isinstance(v, list) and v and all(isinstance(t, str) and t.strip() for t in v) for v in data.values()
        )
    ):
        raise InputError(
            f'{path}: queries JSON must map each part to its texts: {{"dipstick": ["where is the '
            'dipstick", "pull out the oil level stick"]}'
        )
    unknown = sorted(set(data) - set(parts))
    if unknown:
        raise InputError(
            f"{path}: parts {', '.join(unknown)} have no position in the parts file; add them there "
            "or remove their queries"
        )
    return {p: list(texts) for p, texts in data.items()}
