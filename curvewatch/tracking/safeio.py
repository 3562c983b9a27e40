"""Reading files that anyone may have put into a runs directory, without trusting them.

A run folder is data, not code, but it is also not trusted: it may come from another machine,
a shared disk, a tarball, or a user's own loop. Every reader therefore opens files through
this module, which guarantees for *any* bytes and *any* file type:

- only regular files are read: a FIFO, a device, a socket or a directory where a file belongs
  is refused before anything is read (the open is non-blocking, so a FIFO never blocks);
- no symbolic link is followed (`O_NOFOLLOW` on the file, and on every folder between a given
  `root` and the file), so nothing outside the run folder is read through a link in it;
- every read is bounded (a caller's limit; a file that grows while it is read is cut there);
- JSON is parsed with a bound on nesting (RecursionError never escapes), and a number that a
  float cannot hold (10**400) is refused as a value, so no later `float()` overflows.

Every failure is an OSError (the file cannot be read as a file) or a ValueError (its content
is not acceptable), with a message that names the problem and never quotes the content.
"""
from __future__ import annotations

import errno
import json
import os
import stat
import sys
from pathlib import Path
from typing import Any

from .jsonio import NONFINITE

#: Containers nested deeper than this are refused (a run's files nest about 6 deep; pandas,
#: plotly and Streamlit recurse over what is read, so the bound keeps them far from Python's
#: recursion limit).
MAX_JSON_DEPTH = 64
#: The largest integer a float holds (as an int); larger ones are refused as values.
MAX_FLOAT_INT = int(sys.float_info.max)

_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_OPEN_FLAGS = (os.O_RDONLY | _NOFOLLOW | getattr(os, "O_NONBLOCK", 0)
               | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_NOCTTY", 0))
_DIR_FLAGS = os.O_RDONLY | getattr(os, "O_DIRECTORY", 0) | getattr(os, "O_CLOEXEC", 0)
#: errno values an O_NOFOLLOW open gives for a symlink (Linux ELOOP, the BSDs EMLINK)
_SYMLINK_ERRNOS = (errno.ELOOP, errno.EMLINK)


class NotARegularFile(OSError):
    """A path that is not a regular file reached without a symbolic link."""


class BadJson(ValueError):
    """Bytes that are not JSON a reader accepts; the message is the bare reason."""


def file_kind(mode: int) -> str:
    """'a FIFO (named pipe)', 'a directory', ... for an st_mode that is not a regular file."""
    for test, word in ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO (named pipe)"),
                       (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
                       (stat.S_ISSOCK, "a socket"), (stat.S_ISLNK, "a symbolic link")):
        if test(mode):
            return word
    return "not a regular file"


def _refuse(mode: int) -> NotARegularFile:
    if stat.S_ISLNK(mode):
        return NotARegularFile(errno.ELOOP, "a symbolic link, which is never followed")
    return NotARegularFile(errno.EINVAL, f"{file_kind(mode)}, not a regular file")


def _open_final(name: str | Path, dir_fd: int | None) -> int:
    st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)  # FileNotFoundError passes up
    if not stat.S_ISREG(st.st_mode):
        raise _refuse(st.st_mode)
    try:
        fd = os.open(name, _OPEN_FLAGS, dir_fd=dir_fd)
    except OSError as e:
        if e.errno in _SYMLINK_ERRNOS:  # swapped for a link since the lstat
            raise NotARegularFile(e.errno, "a symbolic link, which is never followed") \
                from None
        raise
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):  # swapped for something else since the lstat
            raise _refuse(mode)
    except BaseException:
        os.close(fd)
        raise
    return fd


def open_regular(path: str | Path, *, root: str | Path | None = None) -> int:
    """A read-only descriptor of `path`, which must be a regular file reached without a
    symbolic link: the file itself, and, when `root` is given, every folder from `root` down
    to it (`path` must then lie under `root`). Raises FileNotFoundError when it is absent,
    NotARegularFile (an OSError) for a FIFO, device, socket, directory or symlink, and other
    OSErrors (permissions) as they come. The caller closes the descriptor."""
    if root is None:
        return _open_final(path, None)
    try:
        parts = Path(path).relative_to(root).parts
    except ValueError:
        parts = ()
    if not parts or ".." in parts:
        raise NotARegularFile(errno.EINVAL, "not a file inside its folder")
    fd = os.open(root, _DIR_FLAGS)
    try:
        for part in parts[:-1]:
            try:
                nfd = os.open(part, _DIR_FLAGS | _NOFOLLOW, dir_fd=fd)
            except OSError as e:
                if e.errno in _SYMLINK_ERRNOS or e.errno == errno.ENOTDIR:
                    raise NotARegularFile(e.errno, f"its folder {part!r} is a symbolic link "
                                          "or not a folder (never followed)") from None
                raise
            os.close(fd)
            fd = nfd
        return _open_final(parts[-1], fd)
    finally:
        os.close(fd)


def read_fd(fd: int, limit: int, *, offset: int = 0) -> bytes:
    """Up to `limit` bytes of an open file from `offset` (fewer at its end)."""
    chunks: list[bytes] = []
    got = 0
    while got < limit:
        b = os.pread(fd, min(limit - got, 1 << 24), offset + got)
        if not b:
            break
        chunks.append(b)
        got += len(b)
    return b"".join(chunks)


def read_regular(path: str | Path, limit: int, *, root: str | Path | None = None) -> bytes:
    """The whole of a regular file (see open_regular) of at most `limit` bytes; a larger one
    raises ValueError naming its size."""
    fd = open_regular(path, root=root)
    try:
        size = os.fstat(fd).st_size
        if size > limit:
            raise ValueError(f"{size} bytes, more than such a file can be ({limit})")
        data = read_fd(fd, limit + 1)
    finally:
        os.close(fd)
    if len(data) > limit:
        raise ValueError(f"grew past {limit} bytes while being read")
    return data


def read_tail(path: str | Path, max_bytes: int, *, root: str | Path | None = None
              ) -> str | None:
    """The last `max_bytes` of a regular text file (see open_regular), decoded leniently;
    None when it is absent or cannot be read as a regular file."""
    try:
        fd = open_regular(path, root=root)
    except (OSError, ValueError):
        return None
    try:
        size = os.fstat(fd).st_size
        data = read_fd(fd, max_bytes, offset=max(0, size - max_bytes))
    except OSError:
        return None
    finally:
        os.close(fd)
    return data.decode("utf-8", errors="replace")


def describe(e: BaseException) -> str:
    """A short reason for a failed read, without the file's content."""
    if isinstance(e, NotARegularFile):
        return e.strerror or "not a regular file"
    if isinstance(e, OSError):
        return e.strerror or type(e).__name__
    if isinstance(e, BadJson):
        return f"not valid JSON ({e})"
    return str(e)[:200]


def _reason(e: ValueError) -> str:
    if isinstance(e, json.JSONDecodeError):
        return f"{e.msg} at line {e.lineno} column {e.colno}"
    if isinstance(e, UnicodeDecodeError):
        return f"bad UTF-8 at byte {e.start}"
    return str(e)[:200]


def _strict(obj: Any, depth: int) -> Any:
    if isinstance(obj, str):
        return NONFINITE.get(obj, obj)
    if isinstance(obj, bool) or obj is None or isinstance(obj, float):
        return obj
    if isinstance(obj, int):
        if -MAX_FLOAT_INT <= obj <= MAX_FLOAT_INT:
            return obj
        raise BadJson("a number outside the float range")
    if depth >= MAX_JSON_DEPTH:
        raise BadJson(f"nested more than {MAX_JSON_DEPTH} levels deep")
    if isinstance(obj, dict):
        return {k: _strict(v, depth + 1) for k, v in obj.items()}
    return [_strict(v, depth + 1) for v in obj]


def loads_bounded(data: str | bytes) -> Any:
    """Strict JSON as written by jsonio.dumps ("NaN", "Infinity" back to floats) from bytes
    anyone may have written: raises BadJson, a ValueError (never RecursionError or
    OverflowError), for bad UTF-8, bad JSON, nesting deeper than MAX_JSON_DEPTH and integers a
    float cannot hold."""
    try:
        text = data.decode("utf-8") if isinstance(data, bytes) else data
        obj = _DECODER.decode(text)
    except RecursionError:
        raise BadJson(f"nested more than {MAX_JSON_DEPTH} levels deep") from None
    except ValueError as e:  # JSONDecodeError, UnicodeDecodeError, int digits limit
        raise BadJson(_reason(e)) from None
    if text.count("[") + text.count("{") <= MAX_JSON_DEPTH \
            and not any(s in text for s in _MAYBE_NONFINITE):
        return obj  # no walk needed: nothing nests too deep or reads as a non-finite number
    return _strict(obj, 0)


#: A string value reads as "NaN" or "Infinity" only where one of these is in the raw text
#: (a \u escape can spell any letter).
_MAYBE_NONFINITE = ("NaN", "Infinity", "\\u")


def _float_int(digits: str) -> int:
    """json's int parser, refusing an integer a float cannot hold (10**400)."""
    value = int(digits)
    if len(digits) > 308 and not -MAX_FLOAT_INT <= value <= MAX_FLOAT_INT:
        raise BadJson("a number outside the float range")
    return value


#: One decoder for every call (json.loads with an option builds a decoder and scanner a call).
_DECODER = json.JSONDecoder(parse_int=_float_int)


def read_json_file(path: str | Path, limit: int, *, root: str | Path | None = None) -> Any:
    """A bounded strict-JSON file (read_regular + loads_bounded)."""
    return loads_bounded(read_regular(path, limit, root=root))
