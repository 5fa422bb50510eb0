"""Narration as downloaders save it: YouTube automatic captions (``.en.vtt``) and Whisper JSON.

YouTube's auto-captions (as ``yt-dlp --write-auto-subs`` writes them) are a roll-up display: the ASR words
are broken into caption lines by width and pauses, not by sentence; each cue shows the previous line on
top and types the new line word by word (``word<00:00:01.520><c> next</c>``, the first word's time is the
cue start), a 10 ms cue then shows the finished line alone before the next cue rolls it up. After a pause
the roll-up restarts from a blank line. Text is lower case without punctuation. Whisper's JSON
(``{"text", "segments": [{"start", "end", "text", "words": [...]}], "language"}``) keeps one segment per
spoken sentence, with punctuation and per-word times.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

import numpy as np

from synth.talk import Narration

PAUSE = 1.5
"""A gap this long (s) between words ends the caption line; a longer one also clears the roll-up."""
ROLL_RESET = 3.0
"""A gap this long (s) after a line's last word: the display clears and the next cue starts blank."""


@dataclass(frozen=True)
class Word:
    """One spoken word with its time span (s) and the narration line it belongs to."""

    text: str
    """The word as spoken (narration spelling)."""
    start: float
    """Start time (s)."""
    end: float
    """End time (s)."""
    line: int
    """Index of its narration line."""


def spoken_words(lines: list[Narration]) -> list[Word]:
    """Split each line's span over its words, in proportion to their length (+ a beat between words)."""
    out = []
    for i, n in enumerate(lines):
        words = n.text.split()
        weights = np.array([len(w) + 2.0 for w in words])
        edges = n.start + (n.end - n.start) * np.concatenate([[0], np.cumsum(weights)]) / weights.sum()
        spans = zip(words, edges, edges[1:], strict=False)
        out += [Word(w, round(float(a), 3), round(float(b), 3), i) for w, a, b in spans]
    return out


def asr_token(word: str) -> str:
    """How YouTube's ASR writes a word: lower case, apostrophes kept, other punctuation dropped."""
    return re.sub(r"[^\w']+", "", word.lower())


def caption_lines(rng: np.random.Generator, words: list[Word]) -> list[list[tuple[str, float, float]]]:
    """ASR words (token, start, end) broken into display lines of at most 25–42 characters or at pauses."""
    lines: list[list[tuple[str, float, float]]] = []
    width, prev_end = 0, -1e9
    limit = int(rng.integers(25, 43))
    for w in words:
        token = asr_token(w.text)
        if not token:
            continue
        if not lines or width + 1 + len(token) > limit or w.start - prev_end >= PAUSE:
            lines.append([])
            width, limit = -1, int(rng.integers(25, 43))
        lines[-1].append((token, w.start, w.end))
        width += 1 + len(token)
        prev_end = w.end
    return lines


def _ts(t: float) -> str:
    ms = int(round(t * 1000))
    return f"{ms // 3600000:02d}:{ms // 60000 % 60:02d}:{ms // 1000 % 60:02d}.{ms % 1000:03d}"


def to_youtube_vtt(rng: np.random.Generator, lines: list[Narration]) -> str:
    """The narration as a YouTube automatic-caption WebVTT file (``<stem>.en.vtt``)."""
    caps = caption_lines(rng, spoken_words(lines))
    out = ["WEBVTT", "Kind: captions", "Language: en", ""]
    above = " "
    for k, line in enumerate(caps):
        start, last_end = line[0][1], line[-1][2]
        nxt = caps[k + 1][0][1] if k + 1 < len(caps) else None
        resets = nxt is None or nxt - last_end >= ROLL_RESET
        end = last_end + 0.6 if resets or nxt is None else nxt - 0.01
        typed = line[0][0] + "".join(f"<{_ts(t)}><c> {tok}</c>" for tok, t, _ in line[1:])
        out += [f"{_ts(start)} --> {_ts(end)} align:start position:0%", above, typed, ""]
        text = " ".join(tok for tok, _, _ in line)
        out += [f"{_ts(end)} --> {_ts(end + 0.01)} align:start position:0%", text, " ", ""]
        above = " " if resets else text
    return "\n".join(out) + "\n"


def to_whisper_json(lines: list[Narration]) -> str:
    """The narration as Whisper's ``--output_format json`` with ``--word_timestamps True``."""
    words = spoken_words(lines)
    segments: list[dict[str, Any]] = []
    for i, n in enumerate(lines):
        ws = [w for w in words if w.line == i]
        segments.append(
            {
                "id": i,
                "seek": 0,
                "start": n.start,
                "end": n.end,
                "text": " " + n.text,
                "tokens": [],
                "temperature": 0.0,
                "avg_logprob": -0.25,
                "compression_ratio": 1.4,
                "no_speech_prob": 0.02,
                "words": [{"word": " " + w.text, "start": w.start, "end": w.end, "probability": 0.9} for w in ws],
            }
        )
    return json.dumps({"text": "".join(s["text"] for s in segments), "segments": segments, "language": "en"}, indent=1)
