"""Append-only JSON-lines files: whole-line appends and incremental, tear-tolerant reads.

A line is committed once its single write() returns with the trailing newline. A reader uses
complete lines only: a last line without its newline is still being written and is left for
the next read, which resumes from the byte offset after the last complete line.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import safeio
from .jsonio import dumps

#: Lines longer than this are skipped as corrupt rather than parsed (a metrics record is < 10 KB).
MAX_LINE_BYTES = 1 << 20
#: One read takes at most this many bytes; the rest of a larger file comes with the next read
#: (a follower's next tick). A line longer than this has no end within one read and is skipped.
MAX_READ_BYTES = 256 << 20


class JsonlAppender:
    """Appends strict-JSON records to one file, one whole line per write."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        self._end = os.fstat(self._fd).st_size  # where the next line starts

    def append(self, record: dict[str, Any]) -> None:
        """Write one record as one line. On a write error the file is cut back to its previous
        end, so a failed append never leaves a torn line for the next one to glue onto."""
        data = (dumps(record) + "\n").encode("utf-8")
        try:
            written = os.write(self._fd, data)
            while written < len(data):
                written += os.write(self._fd, data[written:])
        except OSError:
            self._cut_back()
            raise
        self._end += len(data)

    def _cut_back(self) -> None:
        """Truncate to where the failed line started. That offset is kept in memory, not
        asked of the file before every write (an fstat per line), since a run has one writing
        process (the trainer holds the folder's lock; a user's loop owns its run). Never
        grows the file."""
        try:
            if os.fstat(self._fd).st_size > self._end:
                os.ftruncate(self._fd, self._end)
        except OSError:
            pass
        try:
            self._end = os.fstat(self._fd).st_size
        except OSError:
            pass

    def fsync(self) -> None:
        os.fsync(self._fd)

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


@dataclass(frozen=True)
class Chunk:
    """Records parsed from one read, the offset to resume from, and lines that were skipped."""

    records: list[dict[str, Any]]
    offset: int
    problems: list[str] = field(default_factory=list)


def read_from(path: Path, offset: int = 0, *, max_bytes: int = MAX_READ_BYTES) -> Chunk:
    """Parse the complete lines of `path` from byte `offset` on (at most `max_bytes` of them).

    A missing file reads as empty. A path that is not a regular file (a FIFO, device, folder
    or symlink: tracking.safeio) or cannot be opened reads as empty with the reason in
    `problems`. A corrupt line (bad UTF-8, bad JSON, nested too deep, a number a float cannot
    hold, not an object, too long) is skipped and described in `problems`; reading carries on
    with the next line. If the file shrank below `offset` (replaced or truncated) reading
    restarts from 0.
    """
    name = Path(path).name
    try:
        fd = safeio.open_regular(path)
    except FileNotFoundError:
        return Chunk([], 0)
    except OSError as e:
        return Chunk([], offset, [f"{name}: {safeio.describe(e)}; not read"])
    try:
        size = os.fstat(fd).st_size
        if size < offset:
            offset = 0
        data = safeio.read_fd(fd, min(size - offset, max_bytes), offset=offset)
    except OSError as e:
        return Chunk([], offset, [f"{name}: {safeio.describe(e)}; not read"])
    finally:
        os.close(fd)
    end = data.rfind(b"\n")
    if end < 0:
        if len(data) >= max_bytes:  # no line end within one read: a line too long to keep
            return Chunk([], offset + len(data),
                          [f"{name}: line at byte {offset} is longer than {max_bytes} bytes; "
                           "skipped"])
        return Chunk([], offset)
    records, problems = [], []
    pos = offset
    for raw in data[: end + 1].split(b"\n")[:-1]:
        line_at = pos
        pos += len(raw) + 1
        if not raw.strip():
            continue
        if len(raw) > MAX_LINE_BYTES:
            problems.append(f"{name}: line at byte {line_at} is {len(raw)} bytes "
                            f"(limit {MAX_LINE_BYTES}); skipped")
            continue
        try:
            obj = safeio.loads_bounded(raw)
        except ValueError as e:
            problems.append(f"{name}: line at byte {line_at} is not valid JSON ({e}); skipped")
            continue
        if not isinstance(obj, dict):
            problems.append(f"{name}: line at byte {line_at} is a "
                            f"{type(obj).__name__}, not an object; skipped")
            continue
        records.append(obj)
    return Chunk(records, offset + end + 1, problems)
