"""Sim(3) ↔ JSON, so alignments are stored as plain readable numbers (never pickled); and the robust Sim(3) fit,
typed as pycolmap returns it."""

from __future__ import annotations

from typing import Any, cast

import numpy as np
import pycolmap

from recon.types import Array, JSONDict


def sim3_to_json(s: pycolmap.Sim3d) -> JSONDict:
    return {
        "scale": float(s.scale),
        "rotation_xyzw": [float(x) for x in s.rotation.quat],
        "translation": [float(x) for x in s.translation],
    }


def sim3_from_json(d: JSONDict) -> pycolmap.Sim3d:
    return pycolmap.Sim3d(
        float(d["scale"]), pycolmap.Rotation3d(np.array(d["rotation_xyzw"], float)), np.array(d["translation"], float)
    )


def estimate_sim3d_robust(src: Array, tgt: Array, ransac: pycolmap.RANSACOptions) -> dict[str, Any] | None:
    """:func:`pycolmap.estimate_sim3d_robust` typed as it behaves: ``None`` or a dict with ``tgt_from_src`` (the
    Sim(3)), ``num_inliers`` and ``inlier_mask`` (pycolmap's stubs say it returns a bare ``Sim3d``)."""
    return cast("dict[str, Any] | None", pycolmap.estimate_sim3d_robust(src, tgt, ransac))
