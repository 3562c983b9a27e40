"""Strict JSON encoding and crash-safe file writes for the run format.

JSON stays strict (RFC 8259): non-finite floats are written as the strings "NaN", "Infinity"
and "-Infinity" and decoded back to floats, so a diverging run keeps its NaN instead of
producing a file that other tools refuse to parse.
"""
from __future__ import annotations

import contextlib
import fcntl
import json
import math
import os
import tempfile
from pathlib import Path
from typing import Any, BinaryIO, Callable, Iterator, Sequence

NONFINITE = {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}


def _encode_float(x: float) -> Any:
    if math.isnan(x):
        return "NaN"
    if math.isinf(x):
        return "Infinity" if x > 0 else "-Infinity"
    return x


#: Keys json.dumps spells itself; any other key is written as str(key).
_JSON_KEYS = (str, int, float, bool, type(None))


def to_strict(obj: Any) -> Any:
    """Return obj with every non-finite float replaced by its string spelling."""
    if isinstance(obj, float):
        return _encode_float(obj)
    if isinstance(obj, dict):
        return {k if isinstance(k, _JSON_KEYS) else str(k): to_strict(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_strict(v) for v in obj]
    if hasattr(obj, "item") and callable(obj.item):  # numpy / torch scalars
        return to_strict(obj.item())
    return obj


def from_strict(obj: Any) -> Any:
    """Inverse of to_strict: the strings "NaN", "Infinity", "-Infinity" become floats."""
    if isinstance(obj, str):
        return NONFINITE.get(obj, obj)
    if isinstance(obj, dict):
        return {k: from_strict(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [from_strict(v) for v in obj]
    return obj


#: json.dumps builds a new JSONEncoder on every call given any non-default option, and each
#: JSONEncoder.encode a new C encoder: made once here, they cost nothing on the hot path (a
#: metrics line per epoch, a step line every k steps). The same options and the same C
#: encoder json.dumps uses, so the text is the same; without circular-reference markers
#: (shared markers would not be thread-safe; a record holding itself fails on recursion).
_LINE_ENCODER = json.JSONEncoder(allow_nan=False, ensure_ascii=False)
_c_make_encoder = getattr(json.encoder, "c_make_encoder", None)
_line_chunks: Callable[[Any, int], Sequence[str]] = (
    (lambda obj, _level: (_LINE_ENCODER.encode(obj),)) if _c_make_encoder is None else
    _c_make_encoder(None, _LINE_ENCODER.default, json.encoder.encode_basestring, None, ": ",
                    ", ", False, False, False))


def dumps(obj: Any, *, indent: int | None = None) -> str:
    """Serialise to strict JSON; raises ValueError rather than ever emitting bare NaN."""
    try:  # the common case, all finite and native, stays in the C encoder
        if indent is None:
            return "".join(_line_chunks(obj, 0))
        return json.dumps(obj, allow_nan=False, indent=indent, ensure_ascii=False)
    except (ValueError, TypeError):
        return json.dumps(to_strict(obj), allow_nan=False, indent=indent, ensure_ascii=False)


def loads(text: str | bytes) -> Any:
    """Parse strict JSON written by dumps, turning non-finite spellings back into floats."""
    return from_strict(json.loads(text))


def fsync_dir(path: Path) -> None:
    """Make a rename or create inside `path` durable (POSIX needs the directory fsynced too)."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_file(path: Path, *, durable: bool = True) -> Iterator[BinaryIO]:
    """A new binary file that replaces `path` when the block ends without an error, so that
    a reader sees the old or the new file, never a mix (atomic_write_bytes, written piece by
    piece)."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            yield f
            f.flush()
            if durable:
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    if durable:
        fsync_dir(path.parent)


def atomic_write_bytes(path: Path, data: bytes, *, durable: bool = True) -> None:
    """Replace `path` with `data` so that a reader sees the old or the new file, never a mix.

    The temp file lives in the same folder (rename is only atomic within a file system) and is
    fsynced before the rename when `durable`, so a power loss cannot leave an empty file behind
    a completed rename. On any error the temp file is removed and the old file is untouched.
    """
    with atomic_file(path, durable=durable) as f:
        f.write(data)


def atomic_write_json(path: Path, obj: Any, *, durable: bool = True) -> None:
    """Atomically replace `path` with obj as indented strict JSON."""
    atomic_write_bytes(path, (dumps(obj, indent=2) + "\n").encode("utf-8"), durable=durable)


def update_json(path: Path, change: Callable[[Any], Any], *, durable: bool = True) -> Any:
    """Read, change and atomically rewrite `path` as one step against every other
    `update_json` of a file in the same folder (an exclusive flock on the folder itself, which
    an atomic replace leaves in place): two read-modify-writes of run.json (a note from the
    dashboard, a resume's new epoch count) never lose each other's change. Returns the
    written object."""
    fd = os.open(Path(path).parent, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        obj = change(read_json(path))
        atomic_write_json(path, obj, durable=durable)
        return obj
    finally:
        os.close(fd)  # releases the flock


def read_json(path: Path) -> Any:
    """Read a whole strict-JSON file (run.json, status.json)."""
    return loads(Path(path).read_bytes())
