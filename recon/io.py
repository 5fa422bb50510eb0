"""Small I/O primitives every stage relies on: one error type for bad input, atomic writes, fingerprints.

Atomicity matters because stages are resumable: a killed run must never leave a half-written artefact
where a rerun would take it for a finished one.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

ProgressFn = Callable[[str, int, int], None]
"""``progress(description, done, total)``: how every stage reports progress without knowing about rich."""


class InputError(Exception):
    """Bad user input. The message names the file and says how to fix it; the CLI prints it as one line."""


def _process_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_UMASK = _process_umask()
"""Read once at import: ``tempfile`` creates 0600 files / 0700 folders whatever the umask, and a workspace on a
team disk must stay as readable as anything else the user writes."""


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` via a temporary file in the same folder and an atomic rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, 0o666 & ~_UMASK)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def atomic_write_json(path: Path, obj: Any) -> None:
    """Atomically write ``obj`` as indented JSON (UTF-8)."""
    atomic_write_bytes(path, (json.dumps(obj, indent=1, ensure_ascii=False) + "\n").encode())


def read_json(path: Path) -> Any:
    """Read a JSON file, turning a missing or malformed file into an :class:`InputError`."""
    path = Path(path)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError(f"{path}: file not found") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise InputError(f"{path}: not valid JSON ({e}); fix or delete the file") from None


@contextlib.contextmanager
def atomic_dir(final: Path) -> Iterator[Path]:
    """Yield a fresh temporary folder next to ``final``; on success it replaces ``final`` in one rename.

    On error the temporary folder is removed and ``final`` keeps its previous content.
    """
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.", suffix=".tmp", dir=final.parent))
    try:
        tmp.chmod(0o777 & ~_UMASK)
        yield tmp
        _follow_umask(tmp)
        if final.exists():
            old = final.with_name(f".{final.name}.old")
            shutil.rmtree(old, ignore_errors=True)
            os.replace(final, old)
            os.replace(tmp, final)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, final)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _follow_umask(folder: Path) -> None:
    """Give what a writer put in ``folder`` the process umask's modes: some writers (safetensors) create 0600 files
    whatever the umask, and a workspace shared by a group must stay readable by it."""
    for p in folder.rglob("*"):
        if p.is_symlink():
            continue
        p.chmod((0o777 if p.is_dir() else 0o666) & ~_UMASK)


def file_fingerprint(path: Path, chunk: int = 1 << 20) -> str:
    """SHA-256 of a file's bytes: a rerun redoes a video only when its content changed."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def params_fingerprint(params: Any) -> str:
    """Stable short hash of JSON-serialisable parameters (e.g. a dataclass ``asdict``)."""
    return hashlib.sha256(json.dumps(params, sort_keys=True, default=str).encode()).hexdigest()[:16]
