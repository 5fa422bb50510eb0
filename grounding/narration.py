"""Subtitle readers into one :class:`Narration` type: SRT, WebVTT (plain or YouTube's rolling automatic
captions), Whisper JSON, YouTube json3 and a plain list-of-cues JSON.

Narrations are the only supervision of the grounding model and of the temporal step models, so
readers are strict about what matters (times, order) and lenient about what does not (markup, blank cues).
A reader returns narrations or raises :class:`InputError`, whatever the bytes; :func:`load_narrations` is for
callers that must go on without one video's narration.

Automatic captions are a stream of words, not of sentences: YouTube shows each line twice (rolling up) and
cuts lines by screen width. They are read as timed words and re-cut into lines of narration at pauses and
sentence ends (see :func:`cut_lines`), each word once.
"""

from __future__ import annotations

import html
import json
import logging
import math
import re
from dataclasses import dataclass
from pathlib import Path

import srt
import webvtt

from recon.io import InputError

log = logging.getLogger(__name__)

SUBTITLE_SUFFIXES = (".srt", ".vtt", ".json", ".json3")
"""Sidecar formats, in order of preference for one language."""
PAUSE = 1.0
"""Automatic captions: a new line starts when the next word starts more than this many seconds after the
previous one (a ~0.6 s silence after a word of typical length; within a sentence words start 0.2–0.6 s apart)."""
MAX_LINE_SECONDS = 12.0
"""Automatic captions: a line without pauses longer than this is split at its largest gap between words."""
MAX_WORD_SECONDS = 1.0
"""A word's end, when only its start is known: the next word's start, at most this much later."""
_TAG = re.compile(r"<[^>]+>|\{\\[^}]*\}")
_INLINE_TIME = re.compile(r"<((?:\d+:)?\d{1,2}:\d{2}\.\d{3})>")
_NON_SPEECH = re.compile(r"\[[^\]]*\]")
_SENTENCE_END = re.compile(r"[.?!…]['\"”’)]*$")
_LANG = re.compile(r"^[A-Za-z]{2,3}(?:[-_][A-Za-z0-9]{2,8})*$")


@dataclass(frozen=True)
class Narration:
    """One spoken line: its text, its time window in seconds and, when the subtitles give them, word times."""

    text: str
    start: float
    end: float
    words: tuple[tuple[str, float], ...] = ()
    """``(word, start time)`` of each word, for automatic captions and Whisper output with word timestamps."""


def _clean(text: str) -> str:
    return " ".join(html.unescape(_TAG.sub(" ", text)).split())


def _seconds(value, what: str, path: Path) -> float:
    """A finite, non-negative time in seconds (JSON numbers may be anything)."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or value < 0:
        raise InputError(f"{path}: {what} must be a non-negative number of seconds, got {value!r}; fix the file")
    return float(value)


# ---- word streams (automatic captions) ----------------------------------------------------------------------
Word = tuple[str, float, float]  # text, start, end


def cut_lines(words: list[Word], pause: float = PAUSE, max_seconds: float = MAX_LINE_SECONDS) -> list[Narration]:
    """Group timed words into lines of narration: cut after a sentence end and where the next word starts
    more than ``pause`` s after the previous; a line longer than ``max_seconds`` is split at its largest gap."""
    lines, current = [], []
    for i, w in enumerate(words):
        current.append(w)
        nxt = words[i + 1] if i + 1 < len(words) else None
        if nxt is None or nxt[1] - w[1] > pause or _SENTENCE_END.search(w[0]):
            lines.extend(_split_long(current, max_seconds))
            current = []
    return [
        Narration(" ".join(w[0] for w in ln), ln[0][1], max(ln[-1][2], ln[0][1]), tuple((w[0], w[1]) for w in ln))
        for ln in lines
    ]


def _split_long(words: list[Word], max_seconds: float) -> list[list[Word]]:
    if len(words) < 2 or words[-1][2] - words[0][1] <= max_seconds:
        return [words]
    gaps = [words[i + 1][1] - words[i][1] for i in range(len(words) - 1)]
    mid = (len(gaps) - 1) / 2  # among (nearly) equal largest gaps the middle one: halves, not one-word lines
    k = max(range(len(gaps)), key=lambda i: (round(gaps[i], 1), -abs(i - mid))) + 1
    return _split_long(words[:k], max_seconds) + _split_long(words[k:], max_seconds)


def _with_ends(starts: list[tuple[str, float, float]]) -> list[Word]:
    """``(word, start, latest end)`` → words whose end is the next word's start (capped), never overlapping."""
    out = []
    for i, (text, start, limit) in enumerate(starts):
        end = min(limit, start + MAX_WORD_SECONDS)
        if i + 1 < len(starts):
            end = min(end, starts[i + 1][1])
        out.append((text, round(start, 3), round(max(end, start), 3)))
    return out


def _speech(words: list[tuple[str, float, float]]) -> list[tuple[str, float, float]]:
    """Drop non-speech annotations ("[Music]", "[Applause]") and empty tokens."""
    return [w for w in words if w[0] and not _NON_SPEECH.fullmatch(w[0])]


def _timed_words(line: str, start: float, end: float) -> list[tuple[str, float, float]]:
    """Words of one YouTube caption line ``w0<t1><c> w1</c><t2><c> w2</c>``: w0 starts with the cue."""
    parts = _INLINE_TIME.split(line)  # text, time, text, time, ...
    out, t = [], start
    for j, part in enumerate(parts):
        if j % 2:
            t = min(max(_vtt_seconds(part), start), end)
            continue
        for w in _clean(_NON_SPEECH.sub(" ", part)).split():
            out.append((w, t, end))
    return out


def _vtt_seconds(stamp: str) -> float:
    fields = [float(x) for x in stamp.split(":")]
    return sum(v * 60**i for i, v in enumerate(reversed(fields)))


def _rolling_vtt(cues: list[tuple[list[str], float, float]]) -> list[Narration]:
    """YouTube automatic captions: each cue repeats the previous line and adds one (with inline word times);
    ~10 ms cues between them only repeat. Only the new line of each cue is read."""
    words, previous = [], ""
    for lines, start, end in cues:
        lines = [ln for ln in lines if _clean(ln)]
        if not lines:
            continue
        new = lines[-1]
        if _clean(new) == previous:
            continue  # a transition cue: nothing new
        previous = _clean(new)
        words += _timed_words(new, start, end)
    words.sort(key=lambda w: w[1])
    return cut_lines(_with_ends(_speech(words)))


def _unroll(cues: list[tuple[str, float, float]]) -> list[tuple[str, float, float]]:
    """Automatic captions converted to SRT/plain WebVTT (word times lost) still roll: each cue repeats the
    previous cue's last line. When most multi-line cues do, each cue keeps only its lines not shown before."""
    lines = [[c for c in (_clean(x) for x in text.split("\n")) if c] for text, _, _ in cues]
    pairs = [(a, b) for a, b in zip(lines, lines[1:], strict=False) if a and len(b) > 1]
    if len(pairs) < 2 or sum(b[0] == a[-1] for a, b in pairs) < 0.5 * len(pairs):
        return cues
    out: list[tuple[str, float, float]] = []
    previous: list[str] = []
    for (_, start, end), current in zip(cues, lines, strict=True):
        k = 0
        while k < len(current) and current[k] in previous:
            k += 1
        if current[k:]:
            out.append((" ".join(current[k:]), start, end))
        previous = current or previous
    return out


# ---- formats --------------------------------------------------------------------------------------------------
def _from_srt(path: Path, data: str) -> list[tuple[str, float, float]]:
    try:
        return [(s.content, s.start.total_seconds(), s.end.total_seconds()) for s in srt.parse(data)]
    except (srt.SRTParseError, ValueError, OverflowError) as e:
        raise InputError(f"{path}: malformed SRT ({e}); fix the cue numbering/timing lines") from None


def _from_vtt(path: Path, data: str) -> list[tuple[str, float, float]] | list[Narration]:
    try:
        vtt = webvtt.from_string(data)
        cues = [
            (c.lines, c.start_time.in_milliseconds() / 1000, c.end_time.in_milliseconds() / 1000) for c in vtt.captions
        ]
    except (webvtt.errors.MalformedFileError, ValueError, OverflowError) as e:
        raise InputError(f"{path}: malformed WebVTT ({e}); it must start with 'WEBVTT'") from None
    for _, start, end in cues:
        if end < start:
            raise InputError(f"{path}: a cue ends ({end:.3f}s) before it starts ({start:.3f}s); fix its times")
    if any(_INLINE_TIME.search(line) for lines, _, _ in cues for line in lines):
        return _rolling_vtt(cues)
    return [("\n".join(lines), start, end) for lines, start, end in cues]


def _from_json(path: Path, data: str) -> list[tuple[str, float, float]] | list[Narration]:
    fix = (
        'expected Whisper output {"segments": [{"start", "end", "text", "words"?}]}, YouTube json3 '
        '{"events": [...]} or [{"start": seconds, "end": seconds, "text": "..."}, ...]'
    )
    try:
        doc = json.loads(data)
    except (json.JSONDecodeError, RecursionError) as e:
        raise InputError(f"{path}: not valid JSON ({str(e)[:80]}); {fix}") from None
    if isinstance(doc, dict) and isinstance(doc.get("segments"), list):
        return _whisper(path, doc["segments"], fix)
    if isinstance(doc, dict) and isinstance(doc.get("events"), list):
        return _json3(path, doc["events"], fix)
    if not isinstance(doc, list):
        raise InputError(f"{path}: {fix}")
    out = []
    for i, it in enumerate(doc):
        if not isinstance(it, dict) or not isinstance(it.get("text"), str):
            raise InputError(f"{path}: entry {i} is not a narration; {fix}")
        out.append(
            (
                it["text"],
                _seconds(it.get("start"), f"entry {i} 'start'", path),
                _seconds(it.get("end"), f"entry {i} 'end'", path),
            )
        )
    return out


def _whisper(path: Path, segments: list, fix: str) -> list[Narration]:
    """Whisper (and WhisperX) segments are sentence-like already: one line each, word times when given."""
    out = []
    for i, seg in enumerate(segments):
        if not isinstance(seg, dict) or not isinstance(seg.get("text"), str):
            raise InputError(f"{path}: segment {i} has no 'text'; {fix}")
        start = _seconds(seg.get("start"), f"segment {i} 'start'", path)
        end = _seconds(seg.get("end"), f"segment {i} 'end'", path)
        words = seg.get("words") or []
        if not isinstance(words, list):
            raise InputError(f"{path}: segment {i} 'words' must be a list; {fix}")
        timed = []
        for w in words:
            if not isinstance(w, dict) or not isinstance(w.get("word"), str):
                raise InputError(f"{path}: segment {i} has a word without 'word' text; {fix}")
            if "start" in w and w["start"] is not None:  # WhisperX leaves numerals untimed
                timed.append((w["word"].strip(), _seconds(w["start"], f"segment {i} word 'start'", path)))
        text = _clean(seg["text"])
        if not text:
            continue
        if end < start:
            raise InputError(f"{path}: segment {i} ends ({end:.3f}s) before it starts ({start:.3f}s); fix its times")
        out.append(Narration(text, start, end, tuple(w for w in timed if w[0])))
    return out


def _json3(path: Path, events: list, fix: str) -> list[tuple[str, float, float]] | list[Narration]:
    """YouTube json3: events ``{tStartMs, dDurationMs, segs: [{utf8, tOffsetMs}]}``; automatic captions give
    a word per seg with its offset (read as a word stream), manual captions one seg per event (read as cues)."""
    cues, words, auto = [], [], False
    for i, ev in enumerate(events):
        if not isinstance(ev, dict) or not isinstance(ev.get("segs", []), list):
            raise InputError(f"{path}: event {i} is malformed; {fix}")
        start = _seconds(ev.get("tStartMs", 0), f"event {i} 'tStartMs'", path) / 1000
        end = start + _seconds(ev.get("dDurationMs", 0), f"event {i} 'dDurationMs'", path) / 1000
        text = []
        for seg in ev.get("segs", []):
            if not isinstance(seg, dict) or not isinstance(seg.get("utf8", ""), str):
                raise InputError(f"{path}: event {i} has a malformed seg; {fix}")
            auto |= "tOffsetMs" in seg
            t = start + _seconds(seg.get("tOffsetMs", 0), f"event {i} 'tOffsetMs'", path) / 1000
            words += [(w, t, end) for w in _clean(seg.get("utf8", "")).split()]
            text.append(seg.get("utf8", ""))
        cues.append(("".join(text), start, end))
    if auto:
        words.sort(key=lambda w: w[1])
        return cut_lines(_with_ends(_speech(words)))
    return cues


def _decode(path: Path, raw: bytes) -> str:
    encoding = "utf-16" if raw.startswith((b"\xff\xfe", b"\xfe\xff")) else "utf-8-sig"
    try:
        data = raw.decode(encoding)
    except UnicodeDecodeError:
        raise InputError(f"{path}: not UTF-8 text; re-save the subtitles as UTF-8") from None
    if "\x00" in data:
        raise InputError(f"{path}: binary data, not subtitles; give an .srt, .vtt or .json text file")
    return data


def read_narrations(path: Path) -> list[Narration]:
    """Read a subtitle file by its suffix; markup is stripped, empty cues dropped, result sorted by start.

    Raises :class:`InputError` (naming the file and the fix) for anything that is not readable subtitles.
    """
    path = Path(path)
    readers = {".srt": _from_srt, ".vtt": _from_vtt, ".json": _from_json, ".json3": _from_json}
    reader = readers.get(path.suffix.lower())
    if reader is None:
        raise InputError(f"{path}: unknown subtitle format; use one of {', '.join(SUBTITLE_SUFFIXES)}")
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise InputError(f"{path}: subtitle file not found") from None
    except OSError as e:
        raise InputError(f"{path}: cannot read the subtitle file ({e.strerror or e})") from None
    try:
        items = reader(path, _decode(path, raw))
    except (ValueError, TypeError, KeyError, IndexError, AttributeError, OverflowError, RecursionError) as e:
        raise InputError(
            f"{path}: unreadable subtitles ({type(e).__name__}: {str(e)[:80]}); re-export them as SRT or WebVTT"
        ) from None
    if items and not isinstance(items[0], Narration):
        items = _unroll(items)
    out = []
    for item in items:
        if isinstance(item, Narration):
            out.append(item)
            continue
        text, start, end = item
        text = _clean(text)
        if not text:
            continue
        if end < start:
            raise InputError(
                f"{path}: cue {text[:40]!r} ends ({end:.3f}s) before it starts ({start:.3f}s); fix its times"
            )
        out.append(Narration(text, float(start), float(end)))
    return sorted(out, key=lambda n: (n.start, n.end))


_warned: set[Path] = set()


def load_narrations(path: Path | None, what: str = "") -> list[Narration]:
    """Narrations of one video for callers that go on without them: a missing, bad or undecodable file gives
    ``[]`` and one warning per file per process naming the reason (the other videos still train)."""
    if path is None:
        return []
    try:
        return read_narrations(path)
    except InputError as e:
        key = Path(path).resolve()
        if key not in _warned:
            _warned.add(key)
            log.warning("%sno narration used: %s", f"{what}: " if what else "", e)
        return []


# ---- finding sidecar files --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class SubtitleFile:
    """A subtitle file next to a video, as downloaders name them: ``<stem>[.<lang>].<srt|vtt|json|json3>``."""

    path: Path
    language: str | None
    """Language tag from the file name (``en``, ``en-US``), ``None`` for a plain ``<stem>.srt``."""


def subtitle_language(path: Path, video: Path) -> str | None:
    """The language tag of ``path`` as a subtitle of ``video`` (``video.en-US.srt`` → ``en-US``), else ``None``."""
    name, stem = Path(path).name, Path(video).stem
    suffix = Path(path).suffix
    middle = name[len(stem) : len(name) - len(suffix)] if name.startswith(stem) else ""
    return middle[1:] if middle.startswith(".") and _LANG.match(middle[1:]) else None


def subtitle_files(video: Path) -> list[SubtitleFile]:
    """Every sidecar subtitle file of ``video``, best first: English (``en``, then ``en-*``), then the plain
    same-stem file, then other languages (alphabetically); within one language SRT, WebVTT, JSON, json3."""
    video = Path(video)
    found = []
    if video.parent.is_dir():
        for p in video.parent.iterdir():
            if p.suffix.lower() not in SUBTITLE_SUFFIXES or not p.is_file() or not p.name.startswith(video.stem):
                continue
            if p.name == video.stem + p.suffix:
                found.append(SubtitleFile(p, None))
            elif (lang := subtitle_language(p, video)) is not None:
                found.append(SubtitleFile(p, lang))

    def rank(s: SubtitleFile) -> tuple:
        lang = (s.language or "").lower().replace("_", "-")
        group = 0 if lang == "en" else 1 if lang.startswith("en-") else 2 if s.language is None else 3
        return group, lang, SUBTITLE_SUFFIXES.index(s.path.suffix.lower()), s.path.name

    return sorted(found, key=rank)


def find_subtitles(video: Path) -> Path | None:
    """The subtitle file used for a video: the first of :func:`subtitle_files` (English preferred)."""
    files = subtitle_files(video)
    return files[0].path if files else None
