"""Step timeline of a video: narration, predicted and ground-truth steps, and actionness on one time axis.

Seeing them together is how one tells whether a step model is late, early or just following the words.
Drawn on a bare matplotlib ``Figure`` (Agg canvas, no pyplot state), so it works headless and the GUI
can show it as an image.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib import colormaps
from matplotlib.figure import Figure
from PIL import Image

from grounding.narration import Narration

Step = dict[str, Any]
"""``{"label": str, "start": float, "end": float}``."""
SNIPPET = 28


def _label_colors(labels: Sequence[str]) -> dict[str, tuple]:
    cmap = colormaps["tab20"]
    return {lab: cmap(i % 20) for i, lab in enumerate(dict.fromkeys(labels))}


def _bars(ax, y: float, items: Sequence[tuple[str, float, float]], colors: dict[str, tuple] | None) -> None:
    for i, (label, start, end) in enumerate(items):
        color = colors[label] if colors else ("#9ecae1" if i % 2 else "#c6dbef")
        ax.barh(y, end - start, left=start, height=0.7, color=color, edgecolor="#333333", linewidth=0.5)
        text = label if len(label) <= SNIPPET else label[: SNIPPET - 1] + "…"
        ax.text(
            (start + end) / 2, y + (0.12 if i % 2 else -0.12), text, ha="center", va="center", fontsize=6, clip_on=True
        )


def timeline_figure(
    duration: float,
    narrations: Sequence[Narration] | None = None,
    steps: Sequence[Step] | None = None,
    gt_steps: Sequence[Step] | None = None,
    actionness: tuple[np.ndarray, np.ndarray] | None = None,
    title: str = "",
    width: float = 12.0,
) -> Figure:
    """The timeline as a matplotlib figure: a row per track that exists, actionness below on the same axis."""
    rows: list[tuple[str, list[tuple[str, float, float]], bool]] = []
    if narrations:
        rows.append(("narration", [(n.text, n.start, n.end) for n in narrations], False))
    if steps:
        rows.append(("predicted", [(s["label"], s["start"], s["end"]) for s in steps], True))
    if gt_steps:
        rows.append(("ground truth", [(s["label"], s["start"], s["end"]) for s in gt_steps], True))
    colors = _label_colors([it[0] for _, items, by_label in rows if by_label for it in items])
    has_curve = actionness is not None and len(actionness[0]) > 0
    fig = Figure(figsize=(width, 0.6 + 0.55 * max(len(rows), 1) + (1.0 if has_curve else 0.0)), dpi=110)
    if has_curve:
        ax, ax2 = fig.subplots(2, 1, sharex=True, height_ratios=[max(len(rows), 1), 1.6])
    else:
        ax, ax2 = fig.subplots(1, 1), None
    for r, (_, items, by_label) in enumerate(rows):
        _bars(ax, len(rows) - 1 - r, items, colors if by_label else None)
    ax.set_yticks(range(len(rows)), [name for name, _, _ in reversed(rows)], fontsize=8)
    ax.set_ylim(-0.6, max(len(rows), 1) - 0.4)
    ax.set_xlim(0, max(duration, 1e-3))
    if title:
        ax.set_title(title, fontsize=9)
    if ax2 is not None and actionness is not None:  # ax2: there is an actionness curve
        t, v = np.asarray(actionness[0], float), np.asarray(actionness[1], float)
        ax2.fill_between(t, v, color="#fd8d3c", alpha=0.4)
        ax2.plot(t, v, color="#d94801", linewidth=1)
        ax2.set_ylabel("actionness", fontsize=8)
        ax2.set_ylim(0, max(1.0, float(v.max()) if len(v) else 1.0))
    (ax2 or ax).set_xlabel("time (s)", fontsize=8)
    fig.tight_layout()
    return fig


def timeline_image(duration: float, **kwargs: Any) -> np.ndarray:
    """(H, W, 3) uint8 rendering of :func:`timeline_figure` (the GUI shows it as an image)."""
    buf = io.BytesIO()
    timeline_figure(duration, **kwargs).savefig(buf, format="png")
    return np.asarray(Image.open(buf).convert("RGB"))


def plot_timeline(
    out_png: Path,
    duration: float,
    narrations: Sequence[Narration] | None = None,
    steps: Sequence[Step] | None = None,
    gt_steps: Sequence[Step] | None = None,
    actionness: tuple[np.ndarray, np.ndarray] | None = None,
    title: str = "",
) -> Path:
    """Write one video's timeline as a PNG."""
    out_png = Path(out_png)
    out_png.parent.mkdir(parents=True, exist_ok=True)
    timeline_figure(duration, narrations, steps, gt_steps, actionness, title).savefig(out_png)
    return out_png


def plot_timelines(out_png: Path, videos: dict[str, dict[str, Any]]) -> Path:
    """Several videos' timelines stacked in one PNG; ``videos`` maps a name to :func:`plot_timeline`'s arguments."""
    images = [timeline_image(**{"title": name, **kw}) for name, kw in videos.items()]
    if not images:
        raise ValueError("no video to plot")
    width = max(im.shape[1] for im in images)
    stacked = np.concatenate(
        [np.pad(im, ((0, 0), (0, width - im.shape[1]), (0, 0)), constant_values=255) for im in images]
    )
    out_png = Path(out_png)
    out_png.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(stacked).save(out_png)
    return out_png
