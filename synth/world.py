"""Engine-bay layout: named parts and static structure as textured meshes.

World frame (metres): x across the bay (0 … ~1.4, left → right seen from the
front bumper), y from the radiator (0) towards the firewall (~0.9), z up with
the bay floor top at z = 0. A video's camera stands in front (y < 0) and above.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import open3d as o3d
from scipy.spatial.transform import Rotation

from synth.textures import PHOTO_SOURCES, Texture, make_texture

#: Part names every scene contains (the vocabulary of the text → voxel task).
PARTS: tuple[str, ...] = (
    "air_filter",
    "brake_fluid_reservoir",
    "battery",
    "battery_positive_terminal",
    "battery_negative_terminal",
    "dipstick",
    "spark_plugs",
    "coolant_reservoir",
    "oil_filler_cap",
)

#: Parts rigidly attached to another part move with that part's per-video offset.
PART_GROUP: dict[str, str] = {p: p for p in PARTS} | {
    "battery_positive_terminal": "battery",
    "battery_negative_terminal": "battery",
}

SCENE_NAMES: tuple[str, ...] = (
    "civic",
    "corolla",
    "golf",
    "focus",
    "mazda3",
    "octavia",
    "clio",
    "astra",
    "elantra",
    "sentra",
    "jetta",
    "yaris",
)

# Base colours per part so parts are recognisable across scenes, like real ones.
_PART_TINT = {
    "air_filter": (0.15, 0.15, 0.17),
    "brake_fluid_reservoir": (0.85, 0.8, 0.55),
    "battery": (0.1, 0.1, 0.12),
    "battery_positive_terminal": (0.8, 0.1, 0.1),
    "battery_negative_terminal": (0.1, 0.1, 0.1),
    "dipstick": (0.95, 0.75, 0.1),
    "spark_plugs": (0.2, 0.2, 0.25),
    "coolant_reservoir": (0.9, 0.85, 0.75),
    "oil_filler_cap": (0.95, 0.8, 0.15),
}

TEXELS_PER_M = 1000.0
MAX_TEXTURE = 1024
MIN_TEXTURE = 128


@dataclass
class Obj:
    """One rigid textured primitive (box or cylinder) of the bay."""

    name: str
    """Unique object name, e.g. ``engine_block`` or ``spark_plugs_2``."""
    kind: str
    """``box`` or ``cylinder`` (cylinder axis = local z)."""
    size: tuple[float, float, float]
    """Local extent (x, y, z) in metres; a cylinder has (2r, 2r, h)."""
    center: np.ndarray
    """Canonical world position of the object centre."""
    rotation: np.ndarray = field(default_factory=lambda: np.eye(3))
    """Local-to-world rotation."""
    part: str | None = None
    """Part this object belongs to (None for static structure)."""
    texture: Texture | None = None
    """Texture mapped once over the object's extent."""

    def mesh(self, offset: np.ndarray | None = None) -> o3d.geometry.TriangleMesh:
        """Legacy Open3D mesh in world coordinates, optionally shifted by ``offset``."""
        sx, sy, sz = self.size
        if self.kind == "box":
            m = o3d.geometry.TriangleMesh.create_box(sx, sy, sz)
            m.translate((-sx / 2, -sy / 2, -sz / 2))
        else:
            m = o3d.geometry.TriangleMesh.create_cylinder(radius=sx / 2, height=sz, resolution=32, split=1)
        m.rotate(self.rotation, center=(0.0, 0.0, 0.0))
        m.translate(self.center + (0.0 if offset is None else offset))
        return m


@dataclass(eq=False)
class Scene:
    """A car model's canonical bay: objects, part anchors and landmarks."""

    name: str
    """Scene (car model) name."""
    objects: list[Obj]
    """All textured primitives, static and part objects."""
    parts: dict[str, np.ndarray]
    """Canonical anchor (centre of the visible part) per part name."""
    landmarks: list[tuple[str, np.ndarray]]
    """Distinctive static-structure points (name, position) for keypoint-transfer evaluation."""

    def extent(self) -> float:
        """Bay diagonal in metres (the scale errors are relative to)."""
        return float(np.hypot(1.4, 0.9))

    def mesh(self) -> o3d.geometry.TriangleMesh:
        """Whole canonical bay as one vertex-coloured mesh (for viewers/debugging)."""
        out = o3d.geometry.TriangleMesh()
        for obj in self.objects:
            m = obj.mesh()
            assert obj.texture is not None  # build_scene textures every object
            m.paint_uniform_color(obj.texture.levels[-1].reshape(-1, 3).mean(0).astype(np.float64))
            out += m
        out.compute_vertex_normals()
        return out


def _rot(axis: str, deg: float) -> np.ndarray:
    return Rotation.from_euler(axis, deg, degrees=True).as_matrix()


def build_scene(name: str, rng: np.random.Generator) -> Scene:
    """Lay out one car model's bay: seeded dimensions, part slots, mirroring and textures."""
    objs: list[Obj] = []
    u = rng.uniform
    W, D = 1.4, 0.9
    mirror = bool(rng.random() < 0.5)  # which side the battery / air filter sit on

    def add(name: str, kind: str, size, center, rotation=None, part=None) -> Obj:
        c = np.asarray(center, dtype=np.float64)
        if mirror:
            c[0] = W - c[0]
        r = np.eye(3) if rotation is None else rotation
        if mirror and rotation is not None:
            flip = np.diag([-1.0, 1.0, 1.0])
            r = flip @ r @ flip
        sx, sy, sz = (float(s) for s in size)
        o = Obj(name, kind, (sx, sy, sz), c, r, part)
        objs.append(o)
        return o

    # Static structure: relief at several depths so SfM has parallax.
    add("bay_floor", "box", (W, D, 0.02), (W / 2, D / 2, -0.01))
    add("ground", "box", (4.0, 3.0, 0.02), (W / 2, -1.0, -0.55))
    add("bumper", "box", (W + 0.3, 0.22, 0.3), (W / 2, -0.14, -0.2))
    add("radiator_support", "box", (W, 0.06, u(0.12, 0.18)), (W / 2, -0.01, 0.07))
    add("radiator_shroud", "box", (0.7, 0.05, 0.2), (W / 2 + u(-0.1, 0.1), 0.05, 0.1))
    fh = u(0.32, 0.4)
    add("left_fender", "box", (0.05, D + 0.1, fh), (-0.02, D / 2, fh / 2 - 0.05), _rot("y", u(-12, -6)))
    add("right_fender", "box", (0.05, D + 0.1, fh), (W + 0.02, D / 2, fh / 2 - 0.05), _rot("y", u(6, 12)))
    add("firewall", "box", (W + 0.1, 0.05, 0.45), (W / 2, D + 0.02, 0.2), _rot("x", u(-15, -5)))
    add("open_hood", "box", (W + 0.1, 0.03, 1.0), (W / 2, D + 0.25, 0.85), _rot("x", u(-25, -15)))
    for i, x in enumerate((0.13, W - 0.13)):
        h = u(0.25, 0.32)
        add(f"strut_tower_{i}", "cylinder", (0.17, 0.17, h), (x, D - 0.17, h / 2))

    ex, ey = u(0.62, 0.74), u(0.46, 0.52)
    ew, ed, eh = u(0.48, 0.58), u(0.3, 0.36), u(0.26, 0.32)
    engine = add("engine_block", "box", (ew, ed, eh), (ex, ey, eh / 2))
    vw, vd, vh = ew * 0.8, ed * 0.45, u(0.05, 0.07)
    vy = ey + u(-0.04, 0.0)
    valve = add("valve_cover", "box", (vw, vd, vh), (ex, vy, eh + vh / 2))
    ty = ey - ed / 2 - 0.05
    add("timing_cover", "box", (0.1, 0.08, eh * 0.8), (ex + ew / 2 - 0.05, ty + 0.04, eh * 0.4))
    n_runners = 4
    for i in range(n_runners):
        x = ex - vw / 2 + vw * (i + 0.5) / n_runners
        add(f"intake_runner_{i}", "cylinder", (0.05, 0.05, 0.22), (x, ey + ed / 2 + 0.02, eh * 0.75), _rot("x", 70))
    add("intake_plenum", "cylinder", (0.1, 0.1, vw), (ex, ey + ed / 2 + 0.1, eh * 0.55), _rot("y", 90))
    add("upper_hose", "cylinder", (0.045, 0.045, 0.5), (ex - 0.1, 0.12, 0.18), _rot("y", 90) @ _rot("x", u(-10, 10)))
    add("fuse_box", "box", (0.16, 0.12, 0.09), (u(1.0, 1.1), u(0.72, 0.8), 0.2))
    add("ecu_bracket", "box", (0.2, 0.14, 0.1), (u(0.28, 0.36), u(0.52, 0.6), 0.05))

    # Parts (canonical), each near its usual real-world location.
    af = add(
        "air_filter", "box", (u(0.28, 0.34), u(0.2, 0.25), 0.12), (u(0.2, 0.26), u(0.2, 0.3), 0.2), part="air_filter"
    )
    add(
        "air_filter_bracket",
        "box",
        (0.2, 0.16, 0.14),
        (af.center[0] if not mirror else W - af.center[0], af.center[1], 0.07),
    )
    bx, by = u(1.12, 1.2), u(0.22, 0.32)
    bw, bd, bh = u(0.22, 0.26), u(0.16, 0.19), u(0.18, 0.21)
    add("battery_tray", "box", (bw + 0.04, bd + 0.04, 0.05), (bx, by, 0.025))
    add("battery", "box", (bw, bd, bh), (bx, by, 0.05 + bh / 2), part="battery")
    top = 0.05 + bh + 0.0125
    add(
        "battery_positive_terminal",
        "cylinder",
        (0.028, 0.028, 0.025),
        (bx - bw / 2 + 0.04, by - bd / 2 + 0.035, top),
        part="battery_positive_terminal",
    )
    add(
        "battery_negative_terminal",
        "cylinder",
        (0.028, 0.028, 0.025),
        (bx + bw / 2 - 0.04, by - bd / 2 + 0.035, top),
        part="battery_negative_terminal",
    )
    ch = u(0.14, 0.18)
    add(
        "coolant_reservoir",
        "cylinder",
        (0.14, 0.14, ch),
        (u(1.12, 1.2), u(0.52, 0.6), 0.12 + ch / 2),
        part="coolant_reservoir",
    )
    add(
        "brake_fluid_reservoir",
        "box",
        (0.11, 0.08, 0.09),
        (u(0.17, 0.24), u(0.72, 0.78), 0.3),
        part="brake_fluid_reservoir",
    )
    add(
        "brake_master_cylinder",
        "cylinder",
        (0.07, 0.07, 0.2),
        (objs[-1].center[0] if not mirror else W - objs[-1].center[0], 0.78, 0.22),
        _rot("x", 90),
    )

    dx = ex - ew * u(0.2, 0.35)
    dy = ey - ed / 2 - 0.03
    dz = eh + 0.06
    add("dipstick_tube", "cylinder", (0.016, 0.016, dz - 0.05), (dx, dy, (dz - 0.05) / 2 + 0.03))
    add("dipstick", "box", (0.05, 0.018, 0.035), (dx, dy, dz), part="dipstick")
    cap_x = ex + vw / 2 - 0.07
    add("oil_filler_cap", "cylinder", (0.07, 0.07, 0.03), (cap_x, vy, eh + vh + 0.015), part="oil_filler_cap")
    for i in range(4):
        x = ex - vw / 2 + 0.06 + (vw - 0.22) * i / 3
        add(f"spark_plugs_{i}", "cylinder", (0.04, 0.04, 0.06), (x, vy - vd / 4, eh + vh + 0.03), part="spark_plugs")

    _texture(objs, rng)

    def anchor(part: str) -> np.ndarray:
        members = [o.center for o in objs if o.part == part]
        return np.mean(members, axis=0)

    parts = {p: anchor(p) for p in PARTS}
    e_top = engine.center + [0, 0, eh / 2]
    v_top = valve.center + [0, 0, vh / 2]
    landmarks = (
        [
            (f"engine_top_corner_{i}", e_top + [sx * ew / 2, sy * ed / 2, 0])
            for i, (sx, sy) in enumerate(((-1, -1), (1, -1), (-1, 1), (1, 1)))
        ]
        + [(f"valve_cover_corner_{i}", v_top + [sx * vw / 2, -vd / 2, 0]) for i, sx in enumerate((-1, 1))]
        + [(o.name + "_top", o.center + [0, 0, o.size[2] / 2]) for o in objs if o.name.startswith("strut_tower")]
    )
    return Scene(name, objs, parts, [(n, np.asarray(p, float)) for n, p in landmarks])


def _texture(objs: list[Obj], rng: np.random.Generator) -> None:
    """Give every object its own texture; sources rotate so neighbours differ."""
    used: set[tuple] = set()
    sources = list(rng.permutation(PHOTO_SOURCES))
    for i, obj in enumerate(objs):
        size = int(np.clip(max(obj.size) * TEXELS_PER_M, MIN_TEXTURE, MAX_TEXTURE))
        base = _PART_TINT.get(obj.part or "", rng.uniform(0.25, 0.75, 3))
        tint = np.clip(np.asarray(base) + rng.normal(0, 0.05, 3), 0, 1)
        obj.texture = make_texture(rng, size, str(sources[i % len(sources)]), tint, used)


@dataclass(eq=False)
class VideoVariant:
    """How one video's bay differs from the canonical one (parts, light, colour)."""

    offsets: dict[str, np.ndarray]
    """World-space offset per part group (see ``PART_GROUP``), a few cm."""
    light_dir: np.ndarray
    """Unit vector towards the key light."""
    light: float
    """Key light intensity (Lambert term)."""
    ambient: float
    """Ambient light level."""
    gain: np.ndarray
    """Per-channel colour gain (white balance / exposure)."""
    gamma: float
    """Output gamma applied after shading (camera tone curve)."""

    def offset(self, part: str | None) -> np.ndarray:
        """Offset of an object belonging to ``part`` (zero for static structure)."""
        return np.zeros(3) if part is None else self.offsets[PART_GROUP[part]]


def canonical_variant() -> VideoVariant:
    """Neutral variant: canonical layout under a fixed overhead light."""
    return VideoVariant(
        offsets={g: np.zeros(3) for g in set(PART_GROUP.values())},
        light_dir=np.array([0.3, -0.4, 0.866]) / np.linalg.norm([0.3, -0.4, 0.866]),
        light=0.7,
        ambient=0.4,
        gain=np.ones(3),
        gamma=1.0,
    )


def sample_variant(rng: np.random.Generator, max_offset: float = 0.03) -> VideoVariant:
    """Random per-video changes: parts shifted a few cm in the floor plane, new light and colours."""
    groups = sorted(set(PART_GROUP.values()))
    offsets = {g: np.array([*rng.uniform(-max_offset, max_offset, 2), 0.0]) for g in groups}
    az, el = rng.uniform(0, 2 * np.pi), np.deg2rad(rng.uniform(35, 80))
    light_dir = np.array([np.cos(el) * np.cos(az), np.cos(el) * np.sin(az), np.sin(el)])
    return VideoVariant(
        offsets=offsets,
        light_dir=light_dir,
        light=float(rng.uniform(0.5, 0.8)),
        ambient=float(rng.uniform(0.3, 0.45)),
        gain=rng.uniform(0.85, 1.15, 3) * rng.uniform(0.85, 1.15),
        gamma=float(rng.uniform(0.85, 1.15)),
    )
