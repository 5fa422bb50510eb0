"""What makes downloaded footage hard: the edit (jump cuts, off-car inserts) and the camera's flaws.

The edit is a :class:`Timeline` mapping each video frame to a *footage* time of the continuous camera
path (a jump cut skips footage; an insert replaces frames by an off-car shot). The flaws are image-space
effects applied after ray casting, each cheap next to the render: motion blur along every pixel's true
image motion during the exposure, hands over the part being worked on, sensor noise. Ground truth never
depends on them: poses and intrinsics are those of the path and the lens.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import skimage.data
from PIL import Image, ImageDraw, ImageFilter

from synth.render import project
from synth.textures import pink_noise

#: Off-car shot kinds; their images come from photos the bay textures never use (see ``PHOTO_SOURCES``).
INSERT_KINDS: tuple[str, ...] = ("garage_wall", "product", "face_cam", "workshop")
INSERT_SOURCES: dict[str, str] = {
    "garage_wall": "brick",
    "product": "logo",
    "face_cam": "procedural",
    "workshop": "stereo_motorcycle",
}


@dataclass
class Timeline:
    """The edit of one video: which footage time or insert every frame shows."""

    times: np.ndarray
    """Video time of every frame (index / fps)."""
    source: np.ndarray
    """Footage time of every frame on the continuous camera path; NaN on insert frames."""
    shot: np.ndarray
    """Shot index per frame: it changes at every jump cut and at both ends of every insert."""
    cuts: list[dict]
    """Jump cuts: ``frame`` (first frame after the cut), ``time``, ``skipped`` footage seconds."""
    inserts: list[dict]
    """Inserts: ``kind``, ``start``/``end`` (s, end exclusive), ``first_frame``/``last_frame``."""
    footage_seconds: float
    """Length of the continuous camera path the video is cut from."""

    def cut_footage(self) -> list[tuple[float, float]]:
        """(footage time of the cut, skipped seconds) per cut, for the path planner to re-frame there."""
        out = []
        for cut in self.cuts:
            before = self.source[: cut["frame"]]
            last = before[np.isfinite(before)]
            out.append((float(last[-1]) if last.size else 0.0, cut["skipped"]))
        return out


def build_timeline(
    rng: np.random.Generator, seconds: float, fps: float, cuts: int, inserts: int, insert_seconds: float
) -> Timeline:
    """Place ``cuts`` jump cuts (4–8 s of footage skipped) and ``inserts`` off-car shots in the middle 76 %."""
    n = int(round(seconds * fps))
    times = np.arange(n) / fps
    spans: list[tuple[float, float, str]] = []
    for kind in ["cut"] * cuts + ["insert"] * inserts:
        length = insert_seconds * rng.uniform(0.8, 1.2) if kind == "insert" else 0.0
        for _ in range(200):
            start = rng.uniform(0.12 * seconds, 0.88 * seconds - length)
            if all(start + length + 3.0 < a or b + 3.0 < start for a, b, _ in spans):
                spans.append((start, start + length, kind))
                break
    source, shot = times.copy(), np.zeros(n, dtype=np.int64)
    cut_list, insert_list = [], []
    for start, end, kind in sorted(spans):
        i0 = int(np.ceil(start * fps - 1e-9))
        if kind == "cut":
            skipped = float(np.round(rng.uniform(4.0, 8.0), 3))
            source[i0:] += skipped
            shot[i0:] += 1
            cut_list.append({"frame": i0, "time": float(times[i0]), "skipped": skipped})
        else:
            i1 = max(int(np.ceil(end * fps - 1e-9)), i0 + 1)
            source[i0:i1] = np.nan
            shot[i0:i1] += 1
            shot[i1:] += 2
            insert_list.append(
                {
                    "kind": INSERT_KINDS[int(rng.integers(len(INSERT_KINDS)))],
                    "start": i0 / fps,
                    "end": i1 / fps,
                    "first_frame": i0,
                    "last_frame": i1 - 1,
                }
            )
    footage = seconds + sum(c["skipped"] for c in cut_list)
    return Timeline(times, source, shot, cut_list, insert_list, footage)


def exposure_curve(rng: np.random.Generator, times: np.ndarray, jumps_per_minute: float) -> np.ndarray:
    """Auto-exposure gain per frame: steps of ×/÷1.3–1.7 (kept in 0.5–1.9) at random times, each over 0.2 s."""
    out, level = np.ones_like(times), 1.0
    seconds = float(times[-1]) if times.size else 0.0
    for t in np.sort(rng.uniform(0, seconds, int(round(jumps_per_minute * seconds / 60)))):
        new = float(np.clip(level * np.exp(rng.choice([-1, 1]) * rng.uniform(0.25, 0.55)), 0.5, 1.9))
        out += (new - level) * np.clip((times - t) / 0.2, 0, 1)
        level = new
    return out


def motion_blur(
    image: np.ndarray, points: np.ndarray, K: np.ndarray, k1: float, open_pose: np.ndarray, close_pose: np.ndarray
) -> tuple[np.ndarray, float]:
    """Average the image along each pixel's true motion between shutter open and close.

    Up to 10 taps per pixel (one per 2 px of motion), gathered from an edge-padded copy so that no tap needs
    clipping. Returns the blurred image and the median blur length in pixels (recorded as ground truth).
    """
    h, w = image.shape[:2]
    pts = points.reshape(-1, 3)
    motion = project(K, k1, close_pose, pts) - project(K, k1, open_pose, pts)
    median, p99 = np.percentile(np.hypot(motion[:, 0], motion[:, 1]), [50, 99])
    taps = int(np.clip(np.ceil(p99 / 2), 1, 10))
    if taps < 2:
        return image, float(median)
    motion = np.clip(motion, -w / 4, w / 4)
    pad = int(np.ceil(np.abs(motion).max() / 2)) + 1
    padded = np.pad(image, ((pad, pad), (pad, pad), (0, 0)), mode="edge").reshape(-1, 3)
    stride = w + 2 * pad
    base = (np.arange(h, dtype=np.int32)[:, None] + pad) * stride + np.arange(w, dtype=np.int32) + pad
    base = base.ravel()
    acc = np.zeros((h * w, 3), dtype=np.uint16)
    for s in np.linspace(-0.5, 0.5, taps):
        step = np.rint(s * motion).astype(np.int32)
        acc += padded[base + step[:, 1] * stride + step[:, 0]]
    return ((acc + taps // 2) // taps).astype(np.uint8).reshape(h, w, 3), float(median)


_SKIN = ((0.87, 0.68, 0.55), (0.76, 0.55, 0.42), (0.55, 0.37, 0.26), (0.36, 0.24, 0.17))
_GLOVES = ((0.08, 0.08, 0.09), (0.15, 0.3, 0.75))


@dataclass
class Hands:
    """One video's hand: colour (skin or nitrile glove), surface texture and working rhythm."""

    colour: np.ndarray
    """RGB in [0, 1]."""
    texture: np.ndarray
    """(64, 64) luminance variation that moves with the hand (creases, shading)."""
    phases: np.ndarray
    """Phases of the hand's wandering and of its in/out working rhythm."""
    period: float
    """Seconds of one work bout (hand in, then out of the picture)."""
    tilt: float
    """Arm direction in the image, radians from straight up (the arm comes in from the bottom)."""

    @staticmethod
    def sample(rng: np.random.Generator) -> Hands:
        """Random hand for a video."""
        base = _GLOVES[int(rng.integers(2))] if rng.random() < 0.35 else _SKIN[int(rng.integers(len(_SKIN)))]
        tex = pink_noise(rng, 64, beta=1.4).mean(axis=2)
        return Hands(
            np.asarray(base) * rng.uniform(0.9, 1.1),
            0.75 + 0.5 * tex,
            rng.uniform(0, 2 * np.pi, 4),
            float(rng.uniform(6.0, 10.0)),
            float(rng.uniform(-0.7, 0.7)),
        )

    def draw(self, image: np.ndarray, time: float, part_px: np.ndarray, scale: float) -> tuple[np.ndarray, float]:
        """Composite the hand working around ``part_px`` (hand length ≈ ``scale`` px); returns (image, cover)."""
        presence = float(np.clip((np.sin(2 * np.pi * time / self.period + self.phases[0]) + 0.3) / 0.5, 0, 1))
        if presence <= 0 or scale < 4:
            return image, 0.0
        angle = self.tilt + 0.25 * np.sin(2 * np.pi * 0.3 * time + self.phases[1])
        a = np.array([np.sin(angle), -np.cos(angle)])  # wrist → fingertips, pointing up the image
        b = np.array([-a[1], a[0]])
        wander = scale * np.array(
            [
                0.5 * np.sin(2 * np.pi * 0.35 * time + self.phases[2]),
                0.35 * np.sin(2 * np.pi * 0.5 * time + self.phases[3]),
            ]
        )
        tips = part_px + wander - a * (1 - presence) * 5 * scale + a * 0.2 * scale  # fingers over the part
        wrist = tips - a * 1.1 * scale
        caps = [(wrist - a * 8 * scale, wrist, 0.33 * scale), (wrist, wrist + a * 0.5 * scale, 0.42 * scale)]
        for i in range(4):
            base = wrist + a * 0.6 * scale + b * (i - 1.5) * 0.2 * scale
            caps.append((base, base + (a + b * (i - 1.5) * 0.15) * (0.5 + 0.08 * (i in (1, 2))) * scale, 0.09 * scale))
        thumb = wrist + a * 0.25 * scale + b * 0.38 * scale
        caps.append((thumb, thumb + (0.6 * a + 0.55 * b) * 0.55 * scale, 0.1 * scale))
        h, w = image.shape[:2]
        ends = np.array([p for c in caps for p in c[:2]])
        lo = np.clip(np.floor(ends.min(0) - 0.5 * scale), 0, [w, h]).astype(int)
        hi = np.clip(np.ceil(ends.max(0) + 0.5 * scale), 0, [w, h]).astype(int)
        if (hi <= lo).any():
            return image, 0.0
        v, u = np.mgrid[lo[1] : hi[1], lo[0] : hi[0]].astype(np.float32) + 0.5
        sd = np.full(u.shape, np.inf, dtype=np.float32)
        for p0, p1, r in caps:
            d = (p1 - p0).astype(np.float32)
            t = np.clip(((u - p0[0]) * d[0] + (v - p0[1]) * d[1]) / max(float(d @ d), 1e-6), 0, 1)
            sd = np.minimum(sd, np.hypot(u - p0[0] - t * d[0], v - p0[1] - t * d[1]) - r)
        alpha = np.clip(0.5 - sd, 0, 1)[..., None]
        if not alpha.any():
            return image, 0.0
        ti = ((u - tips[0]) * 48 / scale).astype(np.int64) % 64, ((v - tips[1]) * 48 / scale).astype(np.int64) % 64
        shade = (0.7 + 0.3 * np.clip(-sd / (0.25 * scale), 0, 1)) * self.texture[ti[1], ti[0]]
        colour = np.clip(self.colour[None, None] * shade[..., None], 0, 1) * 255
        out = image.copy()
        region = out[lo[1] : hi[1], lo[0] : hi[0]].astype(np.float32)
        out[lo[1] : hi[1], lo[0] : hi[0]] = (region * (1 - alpha) + colour * alpha + 0.5).astype(np.uint8)
        return out, float((alpha > 0.5).sum()) / (h * w)


def add_noise(rng: np.random.Generator, image: np.ndarray, sigma: float) -> np.ndarray:
    """Sensor noise: Gaussian, ``sigma`` in 8-bit levels."""
    if sigma <= 0:
        return image
    noisy = image.astype(np.float32) + rng.standard_normal(image.shape, dtype=np.float32) * np.float32(sigma)
    return np.clip(noisy + 0.5, 0, 255).astype(np.uint8)


class InsertShot:
    """An off-car shot sharing nothing with the bay: a still, slowly panned and zoomed like a hand-held clip."""

    def __init__(self, rng: np.random.Generator, kind: str, width: int, height: int) -> None:
        self.kind, self.size = kind, (width, height)
        big = (int(width * 1.4), int(height * 1.4))
        self.image = _insert_image(rng, kind, big)
        zoom0, zoom1 = rng.uniform(0.72, 0.9, 2)
        c0, c1 = rng.uniform(0.4, 0.6, (2, 2))
        self.boxes = [_box(big, z, c, width / height) for z, c in ((zoom0, c0), (zoom1, c1))]

    def frame(self, a: float) -> np.ndarray:
        """The shot at progress ``a`` in [0, 1]."""
        box = tuple((1 - a) * x0 + a * x1 for x0, x1 in zip(*self.boxes, strict=True))
        return np.asarray(self.image.transform(self.size, Image.Transform.EXTENT, box, Image.Resampling.BILINEAR))


def _box(size: tuple[int, int], zoom: float, centre: np.ndarray, aspect: float) -> tuple[float, ...]:
    w = zoom * min(size[0], size[1] * aspect)
    h = w / aspect
    cx, cy = centre[0] * size[0], centre[1] * size[1]
    cx, cy = np.clip(cx, w / 2, size[0] - w / 2), np.clip(cy, h / 2, size[1] - h / 2)
    return (cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2)


def _insert_image(rng: np.random.Generator, kind: str, size: tuple[int, int]) -> Image.Image:
    """Source picture of an insert (photos no bay texture uses, or drawn shapes), with grain."""
    w, h = size
    if kind == "garage_wall":
        brick = np.asarray(skimage.data.brick(), dtype=np.float32)[..., None] / 255
        tint = rng.uniform(0.5, 1.0, 3)
        img = Image.fromarray((np.clip(brick * tint * 1.3, 0, 1) * 255).astype(np.uint8)).resize(size)
    elif kind == "workshop":
        img = Image.fromarray(skimage.data.stereo_motorcycle()[0]).resize(size)
    else:
        top, bottom = rng.uniform(0.2, 0.9, 3), rng.uniform(0.1, 0.6, 3)
        ramp = np.linspace(0, 1, h)[:, None, None]
        img = Image.fromarray(((top * (1 - ramp) + bottom * ramp) * 255).astype(np.uint8).repeat(w, axis=1))
        draw = ImageDraw.Draw(img)
        if kind == "product":  # a bottle of fluid with its label, on a table
            bw, bh = int(w * 0.22), int(h * 0.62)
            x0, y0 = int(w * rng.uniform(0.35, 0.45)), int(h * 0.22)
            body = tuple(int(c) for c in rng.uniform(40, 230, 3))
            draw.rounded_rectangle((x0, y0, x0 + bw, y0 + bh), radius=bw // 5, fill=body)
            draw.rectangle((x0 + bw // 3, y0 - bh // 7, x0 + 2 * bw // 3, y0), fill=(30, 30, 30))
            logo = Image.fromarray(skimage.data.logo()).convert("RGB").resize((int(bw * 0.8), int(bh * 0.4)))
            img.paste(logo, (x0 + bw // 10, y0 + bh // 3))
        else:  # face_cam: a presenter's head and shoulders
            skin = tuple(int(255 * c) for c in _SKIN[int(rng.integers(len(_SKIN)))])
            shirt = tuple(int(c) for c in rng.uniform(20, 200, 3))
            cx, cy, r = w * rng.uniform(0.4, 0.6), h * 0.42, h * 0.22
            draw.ellipse((cx - 2.2 * r, cy + 1.1 * r, cx + 2.2 * r, cy + 4 * r), fill=shirt)
            draw.ellipse((cx - 0.8 * r, cy - r, cx + 0.8 * r, cy + r), fill=skin)
            draw.chord((cx - 0.85 * r, cy - 1.1 * r, cx + 0.85 * r, cy + 0.3 * r), 180, 360, fill=(40, 30, 25))
            for s in (-1, 1):
                draw.ellipse(
                    (cx + s * 0.35 * r - 0.1 * r, cy - 0.05 * r, cx + s * 0.35 * r + 0.1 * r, cy + 0.1 * r),
                    fill=(25, 25, 25),
                )
            draw.arc(
                (cx - 0.3 * r, cy + 0.3 * r, cx + 0.3 * r, cy + 0.6 * r),
                20,
                160,
                fill=(120, 50, 50),
                width=max(1, int(r / 15)),
            )
        img = img.filter(ImageFilter.GaussianBlur(1.0))
    grain = pink_noise(rng, max(w, h), beta=1.2)[:h, :w]
    out = np.asarray(img.convert("RGB"), dtype=np.float32) / 255 * (0.8 + 0.4 * grain)
    return Image.fromarray((np.clip(out, 0, 1) * 255).astype(np.uint8))
