"""An upright, metric shared frame: gravity up from how people hold cameras, scale from one known length.

An AR client needs z up and metres. SfM gives neither: the shared frame has the reference video's orientation and
arbitrary units. Gravity comes from the cameras: people hold a phone level (little roll), so every camera's right
axis (x) is nearly horizontal and *up* is the direction most orthogonal to all of them. That holds whatever the
pitch — the usual how-to camera looks down at the work from one side, so the mean of the cameras' own up axes
(−y) leans tens of degrees towards the viewer and is only used for the sign (and as a last resort when the
cameras never turn, where roll alone cannot separate up from the one horizontal direction they all face). A
dominant plane of the point cloud (the floor, a bench, the top of an engine bay) settles the cases the cameras
leave open; it is not trusted over them (real work surfaces are not level). Scale: the user names two points and
their distance (:func:`measure`, :func:`fit_scale`).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import open3d as o3d
import pycolmap

from recon.io import InputError
from recon.scene import SharedScene
from recon.transfer import FORMAT, Localize, triangulate
from recon.types import FloatArray, JSONDict

TRIM_DEG = 5.0
"""Cameras whose right axis is further than max(this, 3 × the median) from horizontal are left out (rolled shots,
portrait footage without rotation metadata) and up is refitted without them."""
MIN_TURN_RATIO = 5.0
"""Up is pinned down by the right axes only where the cameras turn (RMS heading spread) this many times more than
they roll (RMS residual): on the synthetic worlds single videos turning 6.5–10° with 0.2–0.35° of roll gave up within
0.08–0.53° (ratios 18–55), so the test is relative to the roll, not an absolute angle. Below it a level dominant
plane decides (:func:`upright`)."""
DEGENERATE_RATIO = 1.5
"""Below this the right axes say nothing about which direction in their null plane is up: without a plane, the
mean camera up projected into that plane is all that is left (off by the cameras' mean pitch)."""
PLANE_LEVEL_DEG = 10.0
"""Where the cameras leave up ambiguous, a dominant plane decides only when its normal is this close to
perpendicular to their mean right axis (as up must be) ..."""
PLANE_NEAR_DEG = 25.0
"""... and, unless the cameras are degenerate, this close to their up (a wall they face is level too) ..."""
PLANE_MIN_SHARE = 0.2
"""... and when it holds at least this share of the points."""
PLANE_THRESHOLD = 0.02
"""Plane RANSAC inlier distance, as a fraction of the points' robust size."""


def _unit(v: np.ndarray) -> np.ndarray:
    return v / max(float(np.linalg.norm(v)), 1e-12)


def _angle(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.degrees(np.arccos(np.clip(abs(_unit(a) @ _unit(b)), -1.0, 1.0))))


def _consensus_up(right: np.ndarray, seed: int = 0) -> np.ndarray:
    """Up hypothesis best supported by the right axes (MSAC over cross products of camera pairs): a robust start,
    since a fifth of portrait or rolled shots is enough to turn the least-squares null space sideways."""
    rng = np.random.default_rng(seed)
    n = len(right)
    i, j = np.triu_indices(n, 1) if n * (n - 1) // 2 <= 4000 else rng.integers(0, n, (2, 4000))
    hyp = np.cross(right[i], right[j])
    norm = np.linalg.norm(hyp, axis=1)
    hyp = hyp[norm > np.sin(np.radians(TRIM_DEG))] / norm[norm > np.sin(np.radians(TRIM_DEG)), None]
    if not len(hyp):
        return np.linalg.eigh(right.T @ right)[1][:, 0]
    t = np.sin(np.radians(TRIM_DEG))
    cost = np.minimum(np.abs(right @ hyp.T), t) ** 2  # (cameras, hypotheses)
    best: FloatArray = hyp[int(np.argmin(cost.sum(axis=0)))]
    return best


def camera_up(cam_from_world: np.ndarray) -> tuple[np.ndarray, JSONDict]:
    """Up (unit, world) from (N, 3, 4) cameras: the direction most orthogonal to their right axes, robustly.

    A consensus start (:func:`_consensus_up`), then the smallest eigenvector of the scatter of the right axes
    within max(``TRIM_DEG``, 3 × median) of horizontal; its sign from the mean camera up (−y). When the headings
    barely change compared with their roll, the null space is nearly a plane holding up and the common viewing
    direction (``ambiguous``: a level dominant plane decides, see :func:`upright`); where roll alone cannot tell
    them apart at all (``degenerate``), the mean −y projected into that plane is what is left (it assumes level
    cameras, which people filming their work rarely hold).
    """
    R = cam_from_world[:, :, :3]
    right, camup = R[:, 0, :], -R[:, 1, :]
    mean_up = _unit(camup.sum(axis=0))
    up = _consensus_up(right)
    keep = np.zeros(len(R), bool)
    w, v = np.linalg.eigh(right.T @ right)  # used as is if fewer than 2 cameras are near level
    for _ in range(10):  # trimmed least squares: the cameras within the bound, refitted until they stay the same
        off = np.degrees(np.arcsin(np.clip(np.abs(right @ up), 0, 1)))
        new = off <= max(TRIM_DEG, 3 * float(np.median(off)))
        if np.array_equal(new, keep) or new.sum() < 2:
            break
        keep = new
        w, v = np.linalg.eigh(right[keep].T @ right[keep])
        up = v[:, 0]
    if keep.sum() < 2:
        keep[:] = True
    off = np.degrees(np.arcsin(np.clip(np.abs(right @ up), 0, 1)))
    turn = np.degrees(np.arcsin(np.sqrt(np.clip(w[1] / keep.sum(), 0, 1))))
    ratio = float(np.sqrt(w[1] / max(w[0], 1e-15)))
    if ratio < DEGENERATE_RATIO:  # up is anywhere in span(v0, v1): take the cameras' own up there
        up = _unit(v[:, :2] @ (v[:, :2].T @ mean_up))
    if up @ mean_up < 0:
        up = -up
    return up, {
        "cameras_used": int(keep.sum()),
        "heading_spread_deg": round(float(turn), 2),
        "roll_median_deg": round(float(np.median(off[keep])), 3),
        "turn_to_roll": round(ratio, 2),
        "ambiguous": bool(ratio < MIN_TURN_RATIO),
        "degenerate": bool(ratio < DEGENERATE_RATIO),
        "mean_camera_up_deg": round(_angle(up, mean_up), 2),
        "mean_right": _unit(right[keep].sum(axis=0)),
    }


def plane_up(points: np.ndarray, seed: int = 0) -> tuple[np.ndarray | None, JSONDict]:
    """Unit normal of the points' dominant plane (open3d's RANSAC, seeded, then a least-squares refit on its
    inliers), or None when no plane holds ``PLANE_MIN_SHARE`` of the points."""
    if points is None or len(points) < 50:
        return None, {"plane": "too few points"}
    size = float(np.median(np.linalg.norm(points - np.median(points, axis=0), axis=1)))
    if size <= 0:
        return None, {"plane": "points have no extent"}
    cloud = o3d.geometry.PointCloud(o3d.utility.Vector3dVector(np.asarray(points, float)))
    o3d.utility.random.seed(seed)
    _, inliers = cloud.segment_plane(PLANE_THRESHOLD * size, 3, 1000)
    share = len(inliers) / len(points)
    if share < PLANE_MIN_SHARE:
        return None, {"plane": "no dominant plane", "plane_share": round(share, 3)}
    inl = np.asarray(points, float)[np.asarray(inliers)]
    return np.linalg.eigh(np.cov((inl - inl.mean(axis=0)).T))[1][:, 0], {"plane_share": round(share, 3)}


def rotation_to_z(up: np.ndarray, forward: np.ndarray) -> np.ndarray:
    """Rotation (new_from_old) taking ``up`` to +z; the horizontal part of ``forward`` becomes +y, so the
    frame's heading follows the cameras' mean view instead of whatever the reference video had."""
    z = _unit(up)
    y = forward - (forward @ z) * z
    if np.linalg.norm(y) < 1e-6:
        y = np.eye(3)[int(np.argmin(np.abs(z)))] - z * z[int(np.argmin(np.abs(z)))]
    y = _unit(y)
    return np.stack([np.cross(y, z), y, z])


def upright(world_from_cams: list[np.ndarray], points: np.ndarray | None) -> tuple[pycolmap.Sim3d, JSONDict]:
    """``new_from_old`` rigid transform (scale 1) that makes z point up, y the cameras' mean horizontal viewing
    direction, and puts the origin at the median of the points (of the camera centres without points).

    Up is :func:`camera_up`; the dominant plane (:func:`plane_up`) replaces it only where the cameras leave it
    ambiguous. On synthetic worlds (2 seeds × 2 scenes, 120 cameras each) the cameras' right
    axes gave 0.12–0.20° from the true up, the dominant plane 0.12–2.65° (the top of an engine bay is not
    level), the mean camera up 52–61° (everyone looks down at the work): a level-looking plane is no better
    than the cameras, so it only breaks their tie.

    ``world_from_cams`` are the registered cameras in the current frame, each a 3×4 ``cam_from_world`` (OpenCV:
    x right, y down, z forward). The info dict says which estimate was used and how far the others were.
    Deterministic: no randomness beyond a seeded RANSAC.
    """
    P = np.asarray(world_from_cams, float).reshape(-1, 3, 4)
    if len(P) < 2:
        raise InputError(f"gravity up needs at least 2 registered cameras, got {len(P)}")
    up, info = camera_up(P)
    mean_right = info.pop("mean_right")
    head: JSONDict = {"method": "cameras", "cameras": len(P)}
    info = head | info
    pts = np.zeros((0, 3)) if points is None else np.asarray(points, float).reshape(-1, 3)
    normal, plane_info = plane_up(pts)
    info |= plane_info
    if normal is not None:
        normal = normal if normal @ up > 0 else -normal
        info["camera_plane_deg"] = round(_angle(up, normal), 3)
        # a tie: up is only known to be level with the cameras' right axes; a plane that is, too, decides it
        level = np.degrees(np.arcsin(min(abs(float(normal @ mean_right)), 1.0))) <= PLANE_LEVEL_DEG
        near = info["degenerate"] or info["camera_plane_deg"] <= PLANE_NEAR_DEG  # not a wall facing the cameras
        if info["ambiguous"] and level and near:
            info["method"], up = "plane", normal
        info["plane"] = (
            "used"
            if info["method"] == "plane"
            else "not needed"
            if not info["ambiguous"]
            else ("not level with the cameras' right axes" if not level else "too far from the cameras' up")
        )
    R = rotation_to_z(up, P[:, 2, :3].sum(axis=0))
    centres = np.einsum("nji,nj->ni", P[:, :, :3], -P[:, :, 3])
    origin = np.median(pts if len(pts) else centres, axis=0)
    info["up"] = [round(float(c), 6) for c in up]
    new_from_old = pycolmap.Sim3d(1.0, pycolmap.Rotation3d(R), -R @ origin)
    return new_from_old, info


def fit_scale(model_lengths: np.ndarray, metres: np.ndarray) -> tuple[float, float]:
    """Least-squares scale ``s`` minimising Σ(s·d_i − D_i)² and the RMS residual (metres) of the fit.

    One length gives an exact scale (residual 0); several disagree by the triangulation error, which the
    residual shows the user.
    """
    d = np.asarray(model_lengths, float).reshape(-1)
    D = np.asarray(metres, float).reshape(-1)
    if len(d) == 0 or len(d) != len(D):
        raise InputError(f"scale needs one known length per measured distance, got {len(d)} and {len(D)}")
    if not (np.all(np.isfinite(d)) and np.all(np.isfinite(D))):
        raise InputError("scale: lengths must be finite numbers")
    if np.any(D <= 0):
        raise InputError(f"scale: known lengths must be positive metres, got {D[D <= 0].tolist()}")
    if np.any(d <= 1e-12 * max(float(d.max()), 1e-12)) or float(d.max()) <= 0:
        raise InputError("scale: two named points coincide (zero length in the model); name two distinct points")
    s = float(d @ D / (d @ d))
    return s, float(np.sqrt(np.mean((s * d - D) ** 2)))


Distance = tuple[str, str, float]
"""A known length: (keypoint name, keypoint name, metres)."""


def file_distances(request: Any, where: str) -> list[Distance]:
    """The ``"distances": [{"a", "b", "metres"}]`` a keypoints file may carry besides its keypoints (``request``:
    the file's JSON, whatever its shape)."""
    out = []
    for i, d in enumerate(request.get("distances", []) if isinstance(request, dict) else []):
        if not (
            isinstance(d, dict)
            and isinstance(d.get("a"), str)
            and isinstance(d.get("b"), str)
            and isinstance(d.get("metres"), int | float)
            and not isinstance(d.get("metres"), bool)
        ):
            raise InputError(f'{where}: distance {i} must look like {{"a": NAME, "b": NAME, "metres": LENGTH}}')
        out.append((d["a"], d["b"], float(d["metres"])))
    return out


def measure(
    scene: SharedScene,
    source: str,
    request: Any,
    distances: list[Distance],
    where: str,
    localize: Localize | None = None,
) -> JSONDict:
    """Triangulate the keypoints the distances name (clicked in ``source``, ``transfer``'s input format) in the
    scene's current frame and fit the scale that makes them the given metres.

    Returns ``{"scale", "residual", "distances": [{"a", "b", "metres", "model"}], "points": {name: xyz}}``;
    anything a user can fix (unknown name, a point seen in fewer than two frames with a camera, parallel rays, a
    non-positive length) raises :class:`InputError` naming ``where`` (the keypoints file) and the fix.
    """
    if source not in scene.videos:
        raise InputError(
            f"{where}: video {source!r} is not aligned in scene {scene.scene!r}; click the points in "
            f"one of {', '.join(scene.videos)}"
        )
    if not isinstance(request, dict) or not isinstance(request.get("keypoints"), list):
        raise InputError(f"{where}: {FORMAT}")
    if not distances:
        raise InputError(f'{where}: no known length; give --distance NAME_A NAME_B METRES (or "distances" in the file)')
    clicked = {str(kp.get("name")): kp.get("observations", []) for kp in request["keypoints"] if isinstance(kp, dict)}
    for a, b, metres in distances:
        for name in (a, b):
            if name not in clicked:
                raise InputError(
                    f"{where}: no keypoint named {name!r}; keypoints there: {', '.join(clicked) or 'none'}"
                )
        if a == b:
            raise InputError(f"{where}: a distance needs two different keypoints, got {a!r} twice")
        if not (math.isfinite(metres) and metres > 0):
            raise InputError(f"{where}: the length between {a!r} and {b!r} must be positive metres, got {metres}")
    points = {}
    for name in sorted({n for a, b, _ in distances for n in (a, b)}):
        try:
            points[name] = triangulate(scene, source, clicked[name], name=name, localize=localize)
        except InputError as e:
            raise InputError(
                f"{where}: {e}; click it in two or more frames of {source} seen from different places"
            ) from None
    model = np.array([np.linalg.norm(points[a] - points[b]) for a, b, _ in distances])
    scale, residual = fit_scale(model, np.array([m for _, _, m in distances]))
    return {
        "scale": scale,
        "residual": residual,
        "points": {n: p.tolist() for n, p in points.items()},
        "distances": [
            {"a": a, "b": b, "metres": m, "model": float(d)} for (a, b, m), d in zip(distances, model, strict=True)
        ],
    }
