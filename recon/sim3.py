"""Sim(3) ↔ JSON, so alignments are stored as plain readable numbers (never pickled)."""

from __future__ import annotations

import numpy as np
import pycolmap


def sim3_to_json(s: pycolmap.Sim3d) -> dict:
    return {"scale": float(s.scale), "rotation_xyzw": [float(x) for x in s.rotation.quat],
            "translation": [float(x) for x in s.translation]}


def sim3_from_json(d: dict) -> pycolmap.Sim3d:
    return pycolmap.Sim3d(float(d["scale"]), pycolmap.Rotation3d(np.array(d["rotation_xyzw"], float)),
                          np.array(d["translation"], float))
