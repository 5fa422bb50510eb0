"""Subtitle readers (SRT, WebVTT, JSON) into one :class:`Narration` type.

Narrations are the only supervision of the grounding model and of the temporal step models, so
readers are strict about what matters (times, order) and lenient about what does not (markup, blank cues).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

import srt
import webvtt

from recon.io import InputError

SUBTITLE_SUFFIXES = (".srt", ".vtt", ".json")
_TAG = re.compile(r"<[^>]+>|\{\\[^}]*\}")


@dataclass(frozen=True)
class Narration:
    """One spoken line: its text and its time window in seconds."""

    text: str
    start: float
    end: float


def _clean(text: str) -> str:
    return " ".join(_TAG.sub(" ", text).split())


def _from_srt(path: Path, data: str) -> list[tuple[str, float, float]]:
    try:
        return [(s.content, s.start.total_seconds(), s.end.total_seconds()) for s in srt.parse(data)]
    except srt.SRTParseError as e:
        raise InputError(f"{path}: malformed SRT ({e}); fix the cue numbering/timing lines") from None


def _from_vtt(path: Path, data: str) -> list[tuple[str, float, float]]:
    try:
        vtt = webvtt.from_string(data)
    except webvtt.errors.MalformedFileError as e:
        raise InputError(f"{path}: malformed WebVTT ({e}); it must start with 'WEBVTT'") from None
    return [(c.text, c.start_time.in_milliseconds() / 1000, c.end_time.in_milliseconds() / 1000) for c in vtt]


def _from_json(path: Path, data: str) -> list[tuple[str, float, float]]:
    fix = 'expected [{"start": seconds, "end": seconds, "text": "..."}, ...]'
    try:
        items = json.loads(data)
    except json.JSONDecodeError as e:
        raise InputError(f"{path}: not valid JSON ({e}); {fix}") from None
    if not isinstance(items, list):
        raise InputError(f"{path}: {fix}")
    out = []
    for i, it in enumerate(items):
        try:
            out.append((str(it["text"]), float(it["start"]), float(it["end"])))
        except (KeyError, TypeError, ValueError):
            raise InputError(f"{path}: entry {i} is not a narration; {fix}") from None
    return out


def read_narrations(path: Path) -> list[Narration]:
    """Read a subtitle file by its suffix; markup is stripped, empty cues dropped, result sorted by start."""
    path = Path(path)
    readers = {".srt": _from_srt, ".vtt": _from_vtt, ".json": _from_json}
    reader = readers.get(path.suffix.lower())
    if reader is None:
        raise InputError(f"{path}: unknown subtitle format; use one of {', '.join(SUBTITLE_SUFFIXES)}")
    try:
        data = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise InputError(f"{path}: subtitle file not found") from None
    except UnicodeDecodeError:
        raise InputError(f"{path}: not UTF-8 text; re-save the subtitles as UTF-8") from None
    out = []
    for text, start, end in reader(path, data):
        text = _clean(text)
        if not text:
            continue
        if end < start:
            raise InputError(f"{path}: cue {text[:40]!r} ends ({end:.3f}s) before it starts ({start:.3f}s); "
                             "fix its times")
        out.append(Narration(text, float(start), float(end)))
    return sorted(out, key=lambda n: (n.start, n.end))


def find_subtitles(video: Path) -> Path | None:
    """The sidecar subtitle file of a video (same stem), preferring SRT, then WebVTT, then JSON."""
    for suffix in SUBTITLE_SUFFIXES:
        candidate = Path(video).with_suffix(suffix)
        if candidate.is_file():
            return candidate
    return None
