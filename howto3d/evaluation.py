"""Evaluation against a synthetic world's ground truth (``ground_truth.json``); stages never read it.

Alignment accuracy: one Sim(3) fit of all shared-frame camera centres to their true centres, then
per-video centre and rotation errors in metres/degrees. Keypoint transfer (source §5.5.1): landmarks
"clicked" (projected) in frames of a source video are triangulated, transferred and compared with their
true 3D positions; PCK over 1–20 cm, through the alignment graph and over direct edges only.
"""

from __future__ import annotations

import numpy as np
import pycolmap

from howto3d.workspace import Workspace
from recon.align import Alignment
from recon.io import InputError, read_json
from recon.scene import RegisteredFrame, SharedScene
from recon.transfer import triangulate

THRESHOLDS_CM = (1, 2, 3, 5, 8, 10, 15, 20)


def _gt_frames(gt: dict, video: str) -> dict[float, np.ndarray]:
    frames = gt["videos"].get(video, {}).get("frames", [])  # a video the user added has no ground truth
    return {round(f["time"], 3): np.array(f["cam_from_world"]) for f in frames
            if f["cam_from_world"] is not None}  # inserts (off-car shots) have no pose in the world


def load_gt(path) -> dict:
    if not path.exists():
        raise InputError(f"{path}: no ground truth; evaluation needs a synthetic workspace (`howto3d synth`)")
    return read_json(path)


def fit_to_world(frames: list[RegisteredFrame], gt: dict,
                 frame_from_shared: pycolmap.Sim3d | None = None) -> pycolmap.Sim3d:
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
    src = np.array(src) if frame_from_shared is None else frame_from_shared * np.array(src)
    return pycolmap.estimate_sim3d(src, np.array(tgt))


def camera_errors(shared: SharedScene, gt: dict) -> dict[str, dict]:
    """Per video: camera-centre error (m) and rotation error (deg) after one global Sim(3) fit."""
    world_from_shared = fit_to_world(shared.frames, gt)
    R_fit = world_from_shared.rotation.matrix()
    out: dict[str, dict] = {}
    for v in shared.videos:
        truth = _gt_frames(gt, v)
        frames = [f for f in shared.frames_of(v) if round(f.time, 3) in truth]
        if not frames:
            continue
        P = [truth[round(f.time, 3)] for f in frames]
        c_err = [np.linalg.norm(world_from_shared * f.center[None] - (-p[:, :3].T @ p[:, 3]))[()] for f, p in
                 zip(frames, P, strict=True)]
        r_err = [np.degrees(np.arccos(np.clip((np.trace(p[:, :3] @ (f.cam_from_world[:, :3] @ R_fit.T).T) - 1) / 2,
                                              -1, 1))) for f, p in zip(frames, P, strict=True)]
        out[v] = {"frames": len(frames), "centre_mean_m": float(np.mean(c_err)), "centre_max_m": float(np.max(c_err)),
                  "rotation_max_deg": float(np.max(r_err))}
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


def eval_transfer(shared: SharedScene, gt: dict, align_dir) -> dict:
    """Keypoint-transfer PCK: shared frame (one global fit), and per video pair via the graph vs direct edges."""
    world_from_shared = fit_to_world(shared.frames, gt)
    alignment = Alignment.load(align_dir) if Alignment.is_done(align_dir) else None
    shared_from = alignment.shared_from_video if alignment else {}
    edges = alignment.accepted_edges() if alignment else {}
    # A per-video world fit measures how well a point lands in *that video's* model (graph vs direct).
    world_from_video = {v: fit_to_world(shared.frames_of(v), gt, shared_from[v].inverse())
                        for v in shared.videos if v in shared_from}
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
    return {"keypoints": len(global_err), "pck_shared": pck(global_err), "pck_graph": pck(graph_err),
            "pck_direct": pck(direct_err), "pairs_graph": len(graph_err), "pairs_direct": len(direct_err),
            "median_error_cm": float(np.median(global_err) * 100) if global_err else None}


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
