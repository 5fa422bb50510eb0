"""Non-repeating per-object textures with mipmaps.

Every object gets its own texture image, built from a unique crop of one of
scikit-image's bundled photos blended with 1/f ("multi-octave") noise. The
texture is mapped once over the object's extent, never tiled, because tiled
textures create repeated SIFT descriptors that break SfM matching.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

import numpy as np
import scipy.fft
import skimage.data
from PIL import Image

#: Bundled scikit-image photos (no download needed) used as texture sources.
PHOTO_SOURCES: tuple[str, ...] = (
    "astronaut", "coffee", "chelsea", "rocket", "hubble_deep_field",
    "immunohistochemistry", "retina", "camera", "coins", "moon", "page",
    "text", "clock", "grass", "gravel",
)  # fmt: skip

MIP_LEVELS = 4


@dataclass(frozen=True)
class Texture:
    """A texture image pyramid plus its provenance (for no-reuse checks)."""

    levels: tuple[np.ndarray, ...]
    """Mip pyramid, float32 (N, N, 3) in [0, 1]; level k is 2**k times coarser."""
    source: str
    """Name of the skimage photo the texture was cropped from."""
    crop: tuple[int, int, int, int]
    """(row0, col0, rows, cols) of the crop inside the source photo."""

    @property
    def size(self) -> int:
        """Side length of the finest level in texels."""
        return self.levels[0].shape[0]


@cache
def _photo(name: str) -> np.ndarray:
    """Load a bundled photo as uint8 RGB (cached, read-only)."""
    img = np.asarray(getattr(skimage.data, name)(), dtype=np.uint8)
    if img.ndim == 2:
        img = np.repeat(img[..., None], 3, axis=2)
    img = img[..., :3]
    img.setflags(write=False)
    return img


def pink_noise(rng: np.random.Generator, size: int, beta: float = 1.6) -> np.ndarray:
    """Isotropic 1/f**beta noise (all octaves at once via FFT), (size, size, 3) in [0, 1]."""
    fy = scipy.fft.fftfreq(size).astype(np.float32)
    fx = scipy.fft.rfftfreq(size).astype(np.float32)
    radius = np.hypot(fy[:, None], fx[None, :])
    radius[0, 0] = 1.0
    amp = radius ** np.float32(-beta)
    amp[0, 0] = 0.0
    shape = (3, size, fx.size)
    spectrum = (rng.standard_normal(shape, dtype=np.float32) + 1j * rng.standard_normal(shape, dtype=np.float32)) * amp
    noise = scipy.fft.irfft2(spectrum.astype(np.complex64), s=(size, size), axes=(1, 2)).transpose(1, 2, 0)
    noise -= noise.mean()
    noise /= noise.std() * 6.0 + 1e-9
    return np.clip(noise + 0.5, 0.0, 1.0).astype(np.float32)


def _mip(img: np.ndarray) -> tuple[np.ndarray, ...]:
    """Box-filtered mip pyramid so distant surfaces do not alias."""
    levels = [img]
    for _ in range(MIP_LEVELS - 1):
        prev = levels[-1]
        n = prev.shape[0] // 2 * 2
        prev = prev[:n, :n]
        levels.append(0.25 * (prev[0::2, 0::2] + prev[1::2, 0::2] + prev[0::2, 1::2] + prev[1::2, 1::2]))
    return tuple(np.ascontiguousarray(x, dtype=np.float32) for x in levels)


def make_texture(rng: np.random.Generator, size: int, source: str, tint: np.ndarray, used: set[tuple]) -> Texture:
    """Build a unique texture from a fresh crop of ``source`` tinted towards ``tint``.

    ``used`` collects (source, crop) keys so no crop is reused within a scene.
    """
    photo = _photo(source)
    h, w = photo.shape[:2]
    for _ in range(100):
        side = int(rng.integers(min(h, w) // 3, min(h, w) + 1))
        r0 = int(rng.integers(0, h - side + 1))
        c0 = int(rng.integers(0, w - side + 1))
        key = (source, (r0, c0, side, side))
        if key not in used:
            break
    used.add(key)
    crop = photo[r0 : r0 + side, c0 : c0 + side]
    crop = np.rot90(crop, int(rng.integers(4)))
    if rng.random() < 0.5:
        crop = crop[:, ::-1]
    crop = crop[..., rng.permutation(3)]
    resized = Image.fromarray(np.ascontiguousarray(crop)).resize((size, size), Image.Resampling.BILINEAR)
    base = np.asarray(resized, dtype=np.float32) / 255.0
    # Mostly luminance noise (like grime and wear), with a little colour variation.
    coarse = pink_noise(rng, size, beta=2.2)
    coarse = 0.75 * coarse.mean(axis=2, keepdims=True) + 0.25 * coarse
    fine = pink_noise(rng, size, beta=1.0)
    fine = 0.75 * fine.mean(axis=2, keepdims=True) + 0.25 * fine
    img = (0.55 * base + 0.45 * tint) * (0.55 + 0.9 * coarse) + 0.35 * (fine - 0.5)
    return Texture(levels=_mip(np.clip(img, 0.0, 1.0)), source=source, crop=key[1])
