"""The workspace configuration ``howto3d.toml``: one section per stage, each a stage's own dataclass.

``howto3d init`` writes every field with its docstring as a comment, so the file documents itself.
"""

from __future__ import annotations

import ast
import dataclasses
import inspect
import textwrap
import tomllib
import types
import typing
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

from grounding.config import GroundingConfig, GuideConfig
from recon.config import AlignConfig, FramesConfig, LocalizeConfig, ReconstructConfig
from recon.io import InputError
from temporal.config import FeatureConfig, GroundednessConfig, ProcedureConfig, StepsConfig


@dataclass
class RunConfig:
    """Where per-item work (a video's frames and SfM, a video pair's alignment) runs."""

    executor: typing.Literal["local", "ray"] = "local"
    """local: worker processes on this machine; ray: Ray tasks on a Ray cluster (inputs and outputs travel
    through Ray's object store, so the nodes need no shared filesystem, only the same Python environment)."""
    ray_address: str = ""
    """Ray cluster to use with executor = "ray" ("": the RAY_ADDRESS environment variable, else a local cluster
    started for this run)."""
    workers: int = 0
    """Tasks in flight at once (0: local = half the cores, ray = the cluster's CPUs / cpus_per_task)."""
    cpus_per_task: int = field(default=1, metadata={"range": (1, None)})
    """With ray, CPUs requested by (and threads given to) each video's SfM task when reconstruct.num_threads is
    -1; one thread per video packs a cluster best when videos outnumber cores."""
    max_retries: int = 3
    """With ray, times a task lost with its node or worker process is retried before its video is failed."""


@dataclass
class ServeConfig:
    """What one request may ask of ``howto3d serve``: an AR prototype's server faces an open network."""

    max_text_chars: int = field(default=1000, metadata={"range": (1, None)})
    """Longest query, overlay or task text accepted (characters); a longer one gets 413 before any work."""
    max_upload_mb: float = field(default=20.0, metadata={"range": (0.001, None)})
    """Largest request body (megabytes, 10^6 bytes), photo uploads included; larger ones get 413 as soon as
    their Content-Length (or their streamed bytes) says so."""
    request_timeout_s: float = field(default=60.0, metadata={"range": (0.1, None)})
    """A request still working after this many seconds gets 504 (the client should retry later)."""
    max_localizations: int = field(default=4, metadata={"range": (1, None)})
    """Localizations (/localize, /overlay) running or waiting at once; one more gets 503 with Retry-After."""
    warm: bool = True
    """Load every scene's model and localization index, and answer one query and one localization per scene,
    before /health/ready says ready: the first client's request then costs what the others do."""


@dataclass
class Config:
    """All stage settings of a workspace."""

    frames: FramesConfig = field(default_factory=FramesConfig)
    """Frame sampling (recon stage)."""
    reconstruct: ReconstructConfig = field(default_factory=ReconstructConfig)
    """Per-video structure from motion (recon stage)."""
    align: AlignConfig = field(default_factory=AlignConfig)
    """Cross-video alignment into one shared frame (recon stage)."""
    grounding: GroundingConfig = field(default_factory=GroundingConfig)
    """Narrations → voxels and the text → voxel model (grounding stage)."""
    clip_features: FeatureConfig = field(default_factory=FeatureConfig)
    """Per-second clip features of the videos (temporal stage)."""
    temporal: StepsConfig = field(default_factory=StepsConfig)
    """Actionness and step timelines of the videos (temporal stage)."""
    discover: ProcedureConfig = field(default_factory=lambda: ProcedureConfig(background="states"))
    """Key steps discovered without a step list (``discover``, and ``run`` for scenes without a task file): the
    paper's CrossTask settings, except that clips nearest an unselected state are background (temporal stage)."""
    groundedness: GroundednessConfig = field(default_factory=GroundednessConfig)
    """Which narration lines describe what is on screen (``groundedness``; ``run`` weights training by it)."""
    guide: GuideConfig = field(default_factory=GuideConfig)
    """Where each step of a task is shown, and which clips show it (``guide``, the server's guide, AR anchors)."""
    localize: LocalizeConfig = field(default_factory=LocalizeConfig)
    """Localizing new photos in a scene's shared frame (recon stage)."""
    run: RunConfig = field(default_factory=RunConfig)
    """Executor of the per-video and per-pair work (all stages that fan out)."""
    serve: ServeConfig = field(default_factory=ServeConfig)
    """Limits and start-up of the HTTP server (``howto3d serve``)."""


@cache
def field_docs(cls: type) -> dict[str, str]:
    """Attribute docstrings (the string literal under each field) of a dataclass, by field name."""
    tree = ast.parse(textwrap.dedent(inspect.getsource(cls)))
    body = tree.body[0].body  # type: ignore[attr-defined]
    docs = {}
    for node, nxt in zip(body, body[1:], strict=False):
        if (
            isinstance(node, ast.AnnAssign)
            and isinstance(node.target, ast.Name)
            and isinstance(nxt, ast.Expr)
            and isinstance(nxt.value, ast.Constant)
            and isinstance(nxt.value.value, str)
        ):
            docs[node.target.id] = " ".join(nxt.value.value.split())
    return docs


def _toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int | float):
        return repr(v)
    if isinstance(v, str):
        return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(v, list | tuple):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    if v is None:
        raise ValueError("TOML has no null: give optional fields a sentinel default")
    raise TypeError(f"cannot write {type(v).__name__} to TOML")


def to_toml(config: Config) -> str:
    """Render the config as TOML with each field's docstring as a comment above it."""
    lines = ["# howto3d workspace configuration. Every field is optional; missing ones take the defaults shown.", ""]
    section_docs = field_docs(Config)
    for section in dataclasses.fields(Config):
        value = getattr(config, section.name)
        lines += [f"# {line}" for line in textwrap.wrap(section_docs.get(section.name, ""), 100)]
        lines.append(f"[{section.name}]")
        docs = field_docs(value.__class__)
        for f in dataclasses.fields(value):
            v = getattr(value, f.name)
            lines += [f"# {line}" for line in textwrap.wrap(docs.get(f.name, ""), 100)]
            # TOML has no null: an unset optional setting (None in its docstring) is shown commented out
            lines.append(f"# {f.name} = (unset)" if v is None else f"{f.name} = {_toml_value(v)}")
        lines.append("")
    return "\n".join(lines)


def _coerce(path: Path, where: str, hint: Any, v: Any) -> Any:
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):  # ``int | None``: TOML can only give the value
        hint = next(a for a in typing.get_args(hint) if a is not type(None))
        origin = typing.get_origin(hint)
    if origin is typing.Literal:
        if v not in typing.get_args(hint):
            raise InputError(f"{path}: {where} = {v!r} is not one of {list(typing.get_args(hint))}")
        return v
    base = origin or hint
    if base is float and isinstance(v, int) and not isinstance(v, bool):
        return float(v)
    if base in (int, float, str, bool) and (type(v) is not base):
        raise InputError(f"{path}: {where} must be {base.__name__}, got {v!r}")
    if base in (list, tuple) and not isinstance(v, list):
        raise InputError(f"{path}: {where} must be a list, got {v!r}")
    return v


def check_range(path: Path, where: str, v: Any, bounds: tuple[float | None, float | None] | None = None) -> None:
    """Out-of-range settings fail when the config is read, naming the field, not deep inside a stage.

    ``bounds`` is the field's own ``metadata["range"]`` (counts and sizes say ``(1, None)``: 0 frames or an
    empty batch is never meaningful); a number whose field declares none must be >= 0."""
    if isinstance(v, bool) or not isinstance(v, int | float):
        return
    lo, hi = bounds or (0, None)
    if v != v or (lo is not None and v < lo) or (hi is not None and v > hi):
        allowed = f"between {lo} and {hi}" if hi is not None else f"at least {lo}"
        raise InputError(f"{path}: {where} = {v!r} is out of range; use a value {allowed}")


def check_choices(path: Path, where: str, v: Any, allowed: tuple[str, ...] | None) -> None:
    """A setting with ``metadata["choices"]`` must be one of them (a list: a non-empty list of them)."""
    if allowed is None:
        return
    if isinstance(v, list):
        ok, what = bool(v) and all(x in allowed for x in v), "a non-empty list of"
    else:
        ok, what = v in allowed, "one of"
    if not ok:
        raise InputError(f"{path}: {where} = {v!r} is not {what} {list(allowed)}")


def from_dict(data: dict, path: Path) -> Config:
    """Build a :class:`Config` from parsed TOML; unknown sections/keys and wrong types are input errors."""
    config = Config()
    sections = {f.name for f in dataclasses.fields(Config)}
    for name, values in data.items():
        if name not in sections or not isinstance(values, dict):
            raise InputError(f"{path}: unknown section [{name}]; known sections: {', '.join(sorted(sections))}")
        current = getattr(config, name)
        hints = typing.get_type_hints(type(current))
        known = {f.name: f for f in dataclasses.fields(current)}
        for key, v in values.items():
            if key not in known:
                raise InputError(f"{path}: unknown key {name}.{key}; known keys: {', '.join(sorted(known))}")
            value = _coerce(path, f"{name}.{key}", hints[key], v)
            check_range(path, f"{name}.{key}", value, known[key].metadata.get("range"))
            check_choices(path, f"{name}.{key}", value, known[key].metadata.get("choices"))
            setattr(current, key, value)
    return config


def load_config(path: Path) -> Config:
    """Read ``howto3d.toml``; a missing file means all defaults."""
    path = Path(path)
    if not path.exists():
        return Config()
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        raise InputError(f"{path}: not UTF-8 text; re-save it as UTF-8 (or delete it for defaults)") from None
    except tomllib.TOMLDecodeError as e:
        raise InputError(f"{path}: invalid TOML ({e}); fix the line or delete the file for defaults") from None
    return from_dict(data, path)
