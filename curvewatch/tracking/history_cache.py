"""A columnar copy of a run's metrics.jsonl: parsed with pyarrow's JSON reader and kept as an
Arrow IPC file in the run folder, so loading a history costs little more than reading bytes.

metrics.jsonl stays the durable log and the only truth. The cache is derived data: it names
the byte length of metrics.jsonl it covers and hashes of that prefix's first and last bytes,
and it is used only when those still match (a rewritten or shrunk file makes it stale), plus
the bytes appended since. A missing, stale or damaged cache is rebuilt from metrics.jsonl; a
folder that cannot be written to is read without one. Whatever pyarrow's reader would read
differently from tracking.jsonl (a bad or blank line, an explicit null, a number past int64,
a string epoch ...) sends the whole read to the plain reader, whose result is never cached:
the two readers give the same frame for the same bytes (tests/test_history_cache.py).
"""
from __future__ import annotations

import hashlib
import io
import json
import mmap
import os
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, Callable

import numpy as np
import pandas as pd
import pyarrow as pa  # type: ignore[import-untyped]  # pyarrow ships no type hints
import pyarrow.ipc as ipc  # type: ignore[import-untyped]
import pyarrow.json as pj  # type: ignore[import-untyped]

try:  # pandas >= 2.3: frames from ready blocks (pyarrow's own to_pandas uses it)
    from pandas.api.internals import create_dataframe_from_blocks  # type: ignore[import-not-found]
except ImportError:  # pragma: no cover - older pandas: table.to_pandas()
    create_dataframe_from_blocks = None

from . import jsonio, safeio
from .jsonl import MAX_LINE_BYTES, MAX_READ_BYTES

#: The cache file, next to metrics.jsonl (hidden: run listings skip dot-files); another
#: .jsonl file read this way gets its own (`cache_name`).
CACHE_NAME = ".metrics.arrow"
#: Files smaller than this parse about as fast as a cache loads: they get no cache file.
CACHE_MIN_BYTES = 64 << 10
#: A live run's cache is rewritten once the bytes appended since exceed this share of it.
REWRITE_SHARE = 4
#: Bytes hashed at each end of the covered prefix to recognise it.
PROBE_BYTES = 4096
#: metrics.jsonl is parsed in pieces of this size (each a whole line or more): what a parse
#: holds besides the history (its own buffers, a few times the piece) is bounded by it
#: (a million epochs read cold: pieces of 4 MiB peak 17 MB higher).
CHUNK_BYTES = 2 * MAX_LINE_BYTES
#: pyarrow parses a piece in blocks of this size (a block holds a whole line).
BLOCK_BYTES = 2 * MAX_LINE_BYTES
#: numpy asks for transparent huge pages for arrays this large (`_room` does not).
HUGE_BYTES = 4 << 20
#: Bytes the cache's header takes (JSON padded with spaces): it is written after the body,
#: whose CRC it holds, into room left before it.
HEADER_BYTES = 512
#: Up to this many columns with holes, a row's holes are coded as bits (bincount, no sort).
MAX_PATTERN_BITS = 20
#: Nested values deeper than this may be past tracking.safeio's bound: plain reader.
MAX_NESTING = safeio.MAX_JSON_DEPTH - 4

_MAGIC = b"CWHIST1\n"
_KEY = "epoch"
_ABSENT = "absent"  # tracking.reader.ABSENT (reader imports this module)
_INT, _FLOAT, _BOOL = pa.int64().id, pa.float64().id, pa.bool_().id  # ids compare fastest
_STRING = pa.string().id
_SCALARS = frozenset((_INT, _FLOAT, _BOOL, _STRING))
_NUMBERS = frozenset((pa.int64(), pa.float64()))
#: tracking.safeio reads these spellings as floats; pyarrow reads them bare.
_NONFINITE = ((b'"NaN"', b"NaN"), (b'"-Infinity"', b"-Infinity"), (b'"Infinity"', b"Infinity"))
#: pyarrow reads an integer past int64 as a double (Python keeps the int): a double column
#: holding a whole number this large goes to the plain reader.
_BIG_INT = 2.0**63
#: An integer past the float range (10**400) pyarrow reads as infinity, Python refuses: where
#: a column holds an infinity, look for 309 digits in a row (digits read as 0, the other
#: bytes of a number kept, anything else as a space).
_DIGITS = bytes(ord("0") if 48 <= i <= 57 else i if i in b".eE" else ord(" ")
                for i in range(256))
_HUGE_INT = b" " + b"0" * 309


@dataclass(frozen=True)
class Stamp:
    """What a cache covers: `covered` bytes of metrics.jsonl, whose first and last
    PROBE_BYTES hash to `head` and `tail`, and the file's size and mtime when it was made."""

    covered: int
    head: str
    tail: str
    size: int
    mtime_ns: int

    def header(self, crc: int, length: int) -> bytes:
        """The cache file's first HEADER_BYTES, for a body of `length` bytes and CRC `crc`."""
        text = jsonio.dumps({**self.__dict__, "crc": crc, "length": length})
        room = HEADER_BYTES - len(_MAGIC) - 8
        data = text.encode("utf-8").ljust(room)
        if len(data) > room:
            raise ValueError("a cache header longer than its room")
        return _MAGIC + room.to_bytes(8, "little") + data


def read(run_dir: str | Path, plain: Callable[[], pd.DataFrame], *,
         filename: str = "metrics.jsonl") -> pd.DataFrame:
    """The history of `run_dir` as `plain()` reads it, from the cache where it is current,
    else parsed with pyarrow (and cached when the folder allows), else `plain()` itself."""
    seeded = seed(run_dir, filename=filename)
    return plain() if seeded is None else seeded[0]


def seed(run_dir: str | Path, *, filename: str = "metrics.jsonl"
         ) -> tuple[pd.DataFrame, int] | None:
    """The history as `read` gives it and the byte offset after the last line it holds (where
    a follower goes on reading), or None where only the plain reader reads the file right."""
    where = os.fspath(run_dir)  # str paths: pathlib costs as much as a syscall
    try:
        fd = safeio.open_regular(os.path.join(where, filename))
    except OSError:  # missing, a FIFO, a symlink: the plain reader says what it says
        return None
    try:
        current = _current_table(fd, os.path.join(where, cache_name(filename)))
    except (OSError, ValueError, RecursionError, pa.ArrowException):  # read it plainly
        current = None
    finally:
        os.close(fd)
    if current is None:
        return None
    table, covered, source = current
    return _frame(table, source), covered


def cache_name(filename: str) -> str:
    """'.metrics.arrow' for metrics.jsonl: the cache of a .jsonl file in its folder."""
    return f".{filename.removesuffix('.jsonl')}.arrow"


def _current_table(fd: int, cache: str) -> tuple[pa.Table, int, bytearray | None] | None:
    """The history's raw table, the offset after its last line, and the cache file's bytes
    where the table's buffers view them (else None)."""
    st = os.fstat(fd)
    end = min(st.st_size, MAX_READ_BYTES)  # what tracking.jsonl.read_from reads at once
    cached = _load(cache)
    if cached is not None:
        stamp, table, source = cached
        if (stamp.size, stamp.mtime_ns) == (st.st_size, st.st_mtime_ns):
            return table, stamp.covered, source
        if st.st_size > stamp.size and stamp.covered <= end \
                and _stamp_of(fd, stamp.covered) == (stamp.head, stamp.tail):  # appended to
            extended = _extend(fd, cache, stamp, table, end, st)
            return None if extended is None else (*extended, source)
    built = _parse_range(fd, 0, end)
    if built is None:
        return None
    table, covered = built
    if covered >= CACHE_MIN_BYTES:
        _save(cache, fd, table, covered, st)
    return table, covered, None


def _extend(fd: int, cache: str, stamp: Stamp, table: pa.Table, end: int,
            st: os.stat_result) -> tuple[pa.Table, int] | None:
    """The cached table plus the lines appended after it; rewritten once they are many."""
    built = _parse_range(fd, stamp.covered, end)
    if built is None:
        return None
    new, covered = built
    if covered == stamp.covered:
        return table, covered
    merged = _concat([table, new])
    if merged is None:
        return None
    if covered - stamp.covered >= max(CACHE_MIN_BYTES, stamp.covered // REWRITE_SHARE):
        _save(cache, fd, merged, covered, st)
    return merged, covered


def _parse_range(fd: int, start: int, end: int) -> tuple[pa.Table, int] | None:
    """Complete lines of bytes start..end as one raw table (one row per line, a key a line
    lacks is null) and the offset after the last of them; None where only the plain reader
    reads them right."""
    tables: list[pa.Table] = []  # pieces kept whole, once one holds other kinds than numbers
    joiner, pos = None, start  # until then each piece is copied into one array a column
    while pos < end:
        data = safeio.read_fd(fd, min(CHUNK_BYTES, end - pos), offset=pos)
        cut = data.rfind(b"\n") + 1
        if cut == 0:
            if len(data) >= CHUNK_BYTES:  # a line longer than a chunk: the plain reader
                return None
            break  # the last line is still being written
        table = _parse_chunk(data[:cut])
        if table is None:
            return None
        if not tables and all(f.type in _NUMBERS for f in table.schema):
            if joiner is None:  # room for the rows of the whole range at this piece's density
                joiner = _Joiner(table.num_rows * (end - start) // cut * 21 // 20 + 1)
            joiner.add(table)
        else:
            if joiner is not None:
                tables.append(joiner.table())
                joiner = None
            tables.append(table)
        del table
        # the parse's own buffers, freed, stay with pyarrow's allocator unless given back
        pa.default_memory_pool().release_unused()
        pos += cut
    if joiner is not None:
        tables.append(joiner.table())
    if not tables:
        return _empty(), pos
    merged = _concat(tables)
    return None if merged is None else (merged, pos)


def _parse_chunk(data: bytes) -> pa.Table | None:
    """Whole lines of JSON objects as a table, or None unless pyarrow reads them exactly as
    tracking.safeio.loads_bounded does."""
    ends = _line_ends(data)
    # each search for a word runs only where its rare letter is there at all (memchr, 20x
    # faster than a search for a word whose first letters are common in metric names)
    has_n, has_i = b"N" in data, b"I" in data
    if ends is None or (b"u" in data and b"null" in data) or (has_n and b"-NaN" in data) \
            or (has_i and data.count(b"Inf") != data.count(b"Infinity")) \
            or _may_nest_deep(data, ends):
        return None
    if not data.isascii():  # pyarrow does not refuse bad UTF-8
        try:
            data.decode("utf-8")
        except UnicodeDecodeError:
            return None
    raw = data
    for quoted, bare in _NONFINITE:
        if (has_n if b"N" in quoted else has_i) and quoted in data:
            if b"\\" + quoted in data:  # an escaped quote: only the plain reader knows
                return None
            data = data.replace(quoted, bare)
    try:
        # on this thread: what pyarrow's worker threads allocate and the main thread frees
        # stays with their heaps (17 MB more at a million epochs) until they allocate again
        table = pj.read_json(pa.BufferReader(data), read_options=pj.ReadOptions(
            use_threads=False, block_size=BLOCK_BYTES))
    except (pa.ArrowException, ValueError):  # bad JSON, bad UTF-8, duplicate keys
        return None
    if table.num_rows != len(ends):  # two objects on a line
        return None
    table = _scalar_columns(table)
    if table is not None and _has_inf(table) and _HUGE_INT in data.translate(_DIGITS):
        return None
    return None if table is None else _first_seen_order(table, raw, ends)


def _first_seen_order(table: pa.Table, data: bytes, ends: np.ndarray) -> pa.Table | None:
    """The table's columns in the plain reader's order: by the line each first appears in,
    then by its place in that line (pyarrow joins the blocks' columns in its own order).
    None where a key is not found as json.dumps spells it."""
    keys = []
    for name, col in zip(table.column_names, table.columns, strict=True):
        row = int(np.argmax(col.is_valid().to_numpy(zero_copy_only=False))) \
            if col.null_count else 0
        start = int(ends[row - 1]) + 1 if row else 0
        place = data.find(json.dumps(name, ensure_ascii=False).encode("utf-8") + b":",
                          start, int(ends[row]))
        if place < 0:
            return None
        keys.append((place, name))
    order = [name for _, name in sorted(keys)]
    return table if order == table.column_names else table.select(order)


def _has_inf(table: pa.Table) -> bool:
    return any(c.type.id == _FLOAT and np.isinf(c.to_numpy()).any() for c in table.columns)


def _may_nest_deep(data: bytes, ends: np.ndarray) -> bool:
    """Could a line nest deeper than MAX_NESTING: does one hold more `[` and `{` than that? The
    plain reader refuses such a line at once, where pyarrow spends about a second on one nested
    3,000 deep (a file of many would hold a page that long for each). Flat records, one `{`
    a line and no `[`, pay one count: 0.3 ms per 2 MiB."""
    arr = np.frombuffer(data, np.uint8)
    if b"[" not in data and np.count_nonzero(arr == ord("{")) == ends.size:
        return False
    starts = np.concatenate(([0], ends[:-1] + 1))
    per_line = np.add.reduceat((arr == ord("[")) | (arr == ord("{")), starts, dtype=np.intp)
    return bool(per_line.max() > MAX_NESTING)


def _line_ends(data: bytes) -> np.ndarray | None:
    """Where each line ends (its newline), None unless every line is one `{...}` of at most
    MAX_LINE_BYTES (what json.dumps writes)."""
    arr = np.frombuffer(data, np.uint8)
    ends = np.flatnonzero(arr == 10)
    starts = np.concatenate(([0], ends[:-1] + 1))
    lengths = ends - starts
    plain = (len(ends) and lengths.min() >= 2 and lengths.max() <= MAX_LINE_BYTES
             and (arr[starts] == ord("{")).all() and (arr[ends - 1] == ord("}")).all())
    return ends if plain else None


def _scalar_columns(table: pa.Table) -> pa.Table | None:
    """The table without nested values (reader._metrics_row drops them); None when a
    column is of a kind the plain reader reads differently."""
    keep = []
    for name, col in zip(table.column_names, table.columns, strict=True):
        if pa.types.is_nested(col.type):
            if _deeper_than(col.type, MAX_NESTING):
                return None
        elif col.type.id in _SCALARS and name != _ABSENT and not _big_int(col):
            keep.append(name)
        else:
            return None  # null, timestamp (pyarrow reads ISO dates), "absent" itself
    return table.select(keep)


def _big_int(col: pa.ChunkedArray) -> bool:
    if col.type.id != _FLOAT:
        return False
    values = np.abs(col.to_numpy())
    return bool(((values >= _BIG_INT) & np.isfinite(values)).any())


def _deeper_than(t: pa.DataType, limit: int) -> bool:
    """Whether a type nests more than `limit` levels (level by level: no recursion)."""
    level = [t]
    for _ in range(limit):
        level = [x.field(i).type for x in level if pa.types.is_nested(x)
                 for i in range(x.num_fields)]
    return any(pa.types.is_nested(x) for x in level)


def _concat(tables: list[pa.Table]) -> pa.Table | None:
    """Tables one after another (`tables` is emptied), columns in order of first appearance;
    a column that is int64 in one and double in another becomes double (as pandas makes of
    such a column); None for any other mix of kinds, or where the result breaks _valid.
    Where every column is int64 or double (a history's usual shape) each comes in one chunk
    (_joined): the cache file is then one record batch, whose columns a frame views without
    a copy (_to_pandas)."""
    kinds: dict[str, set[pa.DataType]] = {}
    for t in tables:
        for f in t.schema:
            kinds.setdefault(f.name, set()).add(f.type)
    if any(len(k) > 1 and k != {pa.int64(), pa.float64()} for k in kinds.values()):
        return None
    chunked = len(tables) > 1 or any(c.num_chunks > 1 for c in tables[0].columns)
    if chunked and all(k <= _NUMBERS for k in kinds.values()):
        merged = _joined(tables)
    else:
        merged = _chained(tables) if len(tables) > 1 else tables[0]
    tables.clear()
    return merged if merged is not None and _valid(merged) else None


def _chained(tables: list[pa.Table]) -> pa.Table | None:
    """concat_tables of a mix of kinds (bool, string): the pieces' chunks kept as they are."""
    try:
        return pa.concat_tables(tables, promote_options="permissive")
    except (pa.ArrowException, ValueError):
        return None


def _joined(tables: list[pa.Table]) -> pa.Table:
    """Int64 and double tables as one table of one chunk a column, `tables` emptied as they
    are copied, each piece's memory given back once its rows are in."""
    joiner = _Joiner(sum(t.num_rows for t in tables))
    while tables:
        joiner.add(tables.pop(0))
        pa.default_memory_pool().release_unused()
    return joiner.table()


class _Joiner:
    """Int64 and double tables added one after another into one array a column, filled as
    they come (a parse's pieces are never all held beside the whole): columns in order of
    first appearance, an int64 column turned double where a piece has doubles, a key a piece
    lacks null. Room for `rows` rows, grown where that was short (an estimate); the room
    never written to is never resident."""

    def __init__(self, rows: int):
        self.capacity, self.rows = max(rows, 1), 0
        self.values: dict[str, np.ndarray] = {}
        self.valid: dict[str, np.ndarray] = {}  # of the columns with holes

    def add(self, table: pa.Table) -> None:
        n = table.num_rows
        if self.rows + n > self.capacity:
            self._grow(max(self.rows + n, self.capacity * 3 // 2))
        for name, col in zip(table.column_names, table.columns, strict=True):
            out = self.values.get(name)
            double = col.type.id == _FLOAT
            if out is None:
                out = self.values[name] = _room(self.capacity, np.float64 if double else np.int64)
                if self.rows:
                    self._holes(name)[:self.rows] = False
            elif double and out.dtype != np.float64:
                out = self.values[name] = self._moved(out, self.capacity, np.float64)
            _copy_into(col, out, self.valid, name, self.rows)
        for name in self.values.keys() - set(table.column_names):
            self._holes(name)[self.rows:self.rows + n] = False
        self.rows += n

    def table(self) -> pa.Table:
        kinds = {np.dtype(np.float64): pa.float64(), np.dtype(np.int64): pa.int64()}
        return pa.table({name: _arrow_array(
            v[:self.rows], self.valid[name][:self.rows] if name in self.valid else None,
            kinds[v.dtype]) for name, v in self.values.items()})

    def _holes(self, name: str) -> np.ndarray:
        return self.valid.setdefault(name, np.ones(self.capacity, bool))

    def _grow(self, capacity: int) -> None:
        self.values = {n: self._moved(v, capacity, v.dtype) for n, v in self.values.items()}
        for name, mask in self.valid.items():
            self.valid[name] = np.ones(capacity, bool)
            self.valid[name][:self.rows] = mask[:self.rows]
        self.capacity = capacity

    def _moved(self, values: np.ndarray, capacity: int, dtype: Any) -> np.ndarray:
        out = _room(capacity, dtype)
        out[:self.rows] = values[:self.rows]
        return out


def _room(rows: int, dtype: Any) -> np.ndarray:
    """An uninitialised array of `rows` values; past HUGE_BYTES in memory of its own, in small
    pages, freed with its last view. numpy asks for transparent huge pages past 4 MB, and where
    the kernel must first compact memory to find them (defrag=madvise, memory fragmented by the
    page cache) a million epochs' columns took 0.3-0.5 s to be first written instead of 0.04."""
    size = rows * np.dtype(dtype).itemsize
    if size < HUGE_BYTES:  # numpy's malloc, whose small blocks are reused
        return np.empty(rows, dtype)
    return np.frombuffer(mmap.mmap(-1, size, flags=mmap.MAP_PRIVATE), dtype, count=rows)


def _copy_into(col: pa.ChunkedArray, out: np.ndarray, valid: dict[str, np.ndarray],
               name: str, at: int) -> None:
    """A column's values into out[at:], its holes (if any) into valid[name]."""
    for chunk in col.chunks:
        n = len(chunk)
        if chunk.null_count:
            valid.setdefault(name, np.ones(len(out), bool))[at:at + n] = \
                chunk.is_valid().to_numpy(zero_copy_only=False)
            chunk = chunk.fill_null(0)
        out[at:at + n] = chunk.to_numpy(zero_copy_only=False)
        at += n


def _arrow_array(values: np.ndarray, valid: np.ndarray | None, kind: pa.DataType) -> pa.Array:
    """An Arrow array over numpy's buffer (no copy), null where not `valid`."""
    if valid is None or valid.all():
        return pa.Array.from_buffers(kind, len(values), [None, pa.py_buffer(values)])
    bits = pa.py_buffer(np.packbits(valid, bitorder="little"))
    return pa.Array.from_buffers(kind, len(values), [bits, pa.py_buffer(values)],
                                 null_count=int(len(valid) - valid.sum()))


def _valid(table: pa.Table) -> bool:
    """Every row has an int epoch >= 1 (the plain reader drops others) and no bool column
    has holes (pandas would give them NaN, Arrow None)."""
    key = table.schema.get_field_index(_KEY)  # -1: absent (or twice)
    if key < 0:
        return False
    epoch = table.column(key)
    if epoch.type.id != _INT or epoch.null_count:
        return False
    if table.num_rows and int(epoch.to_numpy().min()) < 1:
        return False
    return not any(t.id == _BOOL and table.column(i).null_count
                   for i, t in enumerate(table.schema.types))


def _empty() -> pa.Table:
    return pa.table({_KEY: pa.array([], pa.int64())})


def _frame(table: pa.Table, source: bytearray | None = None) -> pd.DataFrame:
    """The raw table as tracking.reader._table builds it: the `absent` column from the
    holes, then one row per epoch (the last one kept), sorted."""
    columns = table.columns
    frame = _to_pandas(table, columns, source)
    holes = [(n, c.is_null().to_numpy(zero_copy_only=False))
             for n, c in zip(table.schema.names, columns, strict=True) if c.null_count]
    if holes:
        frame[_ABSENT] = _absent_labels(holes, table.num_rows)
    epochs = table.column(_KEY).to_numpy()
    if len(epochs) > 1 and not (epochs[1:] > epochs[:-1]).all():
        frame = frame.drop_duplicates(_KEY, keep="last").sort_values(_KEY, kind="stable")
        frame = frame.reset_index(drop=True)
    return frame


def _to_pandas(table: pa.Table, columns: list[pa.ChunkedArray],
               source: bytearray | None) -> pd.DataFrame:
    """table.to_pandas(), built from one block per column where every column is a whole
    int64 or a double (a history's usual shape): a column in one chunk without holes is a
    view of its bytes (for a cache file, of `source`, the bytes read: a million epochs are
    not held twice), any other is copied chunk by chunk. `columns` are the table's."""
    writable = _Writable(source)
    blocks = []
    for i, col in enumerate(columns):
        kind = col.type.id
        if kind not in (_INT, _FLOAT) or (kind == _INT and col.null_count) \
                or create_dataframe_from_blocks is None:
            frame: pd.DataFrame = table.to_pandas(use_threads=False)
            return frame
        values = writable.values(col, np.int64 if kind == _INT else np.float64)
        blocks.append((values.reshape(1, -1), np.array([i])))
    frame = create_dataframe_from_blocks(blocks, index=pd.RangeIndex(table.num_rows),
                                         columns=_columns(tuple(table.schema.names)))
    return frame


class _Writable:
    """Numpy views of whole int64/double columns that their frame's caller may write to.
    Arrow hands out read-only views, and pandas writes `frame.loc[i, c] = v` in place into a
    block nobody else references, which then raises; the bytes themselves are this read's
    own (the cache file's bytearray, `source`, or the parse's numpy arrays), so the views are
    taken from them, not from Arrow."""

    def __init__(self, source: bytearray | None):
        self.source = source
        self.start = np.frombuffer(source, np.uint8).ctypes.data if source else 0

    def values(self, col: pa.ChunkedArray, dtype: type) -> np.ndarray:
        """A column's values: a view of its one chunk without holes, else a copy (a hole
        reads NaN), filled chunk by chunk rather than joined first and then copied."""
        if col.num_chunks == 1 and not col.null_count:
            chunk = col.chunk(0)
            buf = chunk.buffers()[1]
            skip = chunk.offset * np.dtype(dtype).itemsize
            at = buf.address - self.start
            view: np.ndarray
            if self.source is not None and 0 <= at and at + buf.size <= len(self.source):
                view = np.frombuffer(self.source, dtype, count=len(chunk), offset=at + skip)
            else:  # writable where Arrow wraps a numpy array (a parse's _Joiner)
                view = np.frombuffer(buf, dtype, count=len(chunk), offset=skip)
            return view if view.flags.writeable else view.copy()
        values = _room(len(col), dtype)
        at = 0
        for piece in col.chunks:
            values[at:at + len(piece)] = piece.to_numpy(zero_copy_only=False)
            at += len(piece)
        return values


_indexes: dict[tuple[str, ...], pd.Index] = {}


def _columns(names: tuple[str, ...]) -> pd.Index:
    """One shared (immutable) column Index per set of names: building one, and its lookup
    engine, costs more than the rest of a small frame."""
    index = _indexes.get(names)
    if index is None:
        if len(_indexes) >= 256:
            _indexes.clear()
        index = _indexes[names] = pd.Index(names)
    return index


def _absent_labels(holes: list[tuple[str, np.ndarray]], rows: int) -> np.ndarray:
    """Per row, the comma-joined names of the columns it lacks, in column order. Rows share
    few patterns: each row's pattern is a bit code (one bit a column with holes), and each
    distinct code is joined once."""
    names = [n for n, _ in holes]
    patterns: Any
    if len(names) > MAX_PATTERN_BITS:  # rare: sort whole rows instead
        mask = np.stack([m for _, m in holes], axis=1)
        patterns, which = np.unique(mask, axis=0, return_inverse=True)
    else:
        codes = np.zeros(rows, np.int64)
        for bit, (_, hole) in enumerate(holes):
            codes[hole] |= 1 << bit
        present = np.flatnonzero(np.bincount(codes))
        lookup = np.zeros(int(present[-1]) + 1, np.int64)
        lookup[present] = np.arange(len(present))
        which = lookup[codes]
        patterns = [[(int(c) >> b) & 1 for b in range(len(names))] for c in present]
    labels = np.array([",".join(n for n, hole in zip(names, p, strict=True) if hole)
                       for p in patterns], dtype=object)
    result: np.ndarray = labels[which.reshape(-1)]
    return result


def _stamp_of(fd: int, covered: int) -> tuple[str, str]:
    """Hashes of the first and last PROBE_BYTES of the file's first `covered` bytes."""
    head = safeio.read_fd(fd, min(PROBE_BYTES, covered))
    tail = safeio.read_fd(fd, min(PROBE_BYTES, covered), offset=max(0, covered - PROBE_BYTES))
    return _digest(head), _digest(tail)


def _digest(data: bytes) -> str:
    return hashlib.blake2b(data, digest_size=16).hexdigest()


def _save(cache: str, fd: int, table: pa.Table, covered: int, st: os.stat_result) -> None:
    """Write the cache atomically, the Arrow file streamed to disk (no copy of it held in
    memory); a folder the reader may not write to keeps none."""
    stamp = Stamp(covered, *_stamp_of(fd, covered), st.st_size, st.st_mtime_ns)
    try:
        with jsonio.atomic_file(Path(cache), durable=False) as f:  # derived: a torn one is rebuilt
            f.write(bytes(HEADER_BYTES))
            body = _Summed(f)
            with ipc.new_file(body, table.schema) as writer:
                writer.write_table(table)
            if body.length > _limit(covered):
                raise ValueError("the reader would refuse it")
            f.seek(0)
            f.write(stamp.header(body.crc, body.length))
    except (OSError, ValueError):
        pass


class _Summed(io.RawIOBase):
    """A binary file's writer that also keeps the CRC-32 and length of what it wrote."""

    def __init__(self, f: BinaryIO):
        super().__init__()
        self._f, self.crc, self.length = f, 0, 0

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        self.crc = zlib.crc32(data, self.crc)
        self.length += memoryview(data).nbytes
        return self._f.write(data)


def _limit(covered: int) -> int:
    """The largest cache of `covered` bytes of JSON lines that is read (a planted giant
    file is not)."""
    return 16 * covered + (1 << 20)


def _read_whole(path: str | Path, limit: int) -> bytearray:
    """A regular file of at most `limit` bytes (tracking.safeio.open_regular: no symlink,
    FIFO or device), read straight into one buffer: a 100 MB cache is not copied twice."""
    fd = safeio.open_regular(path)
    try:
        size = os.fstat(fd).st_size
        if size > limit:
            raise ValueError(f"{size} bytes, more than a history cache can be ({limit})")
        data = bytearray(size)
        view, got = memoryview(data), 0
        while got < size:
            n = os.preadv(fd, [view[got:]], got)
            if n == 0:
                break  # shrank while read: the CRC or the header tells
            got += n
    finally:
        os.close(fd)
    return data[:got] if got < size else data


def _load(path: str | Path) -> tuple[Stamp, pa.Table, bytearray] | None:
    """The stamp and table of a cache file, and the bytes read, which the table's buffers
    view; None when it is absent or damaged in any way."""
    try:
        data = _read_whole(path, _limit(MAX_READ_BYTES) + (1 << 16))
        if not data.startswith(_MAGIC):
            return None
        size = int.from_bytes(data[8:16], "little")
        meta = safeio.loads_bounded(bytes(data[16:16 + size]))
        body = memoryview(data)[16 + size:]
        crc, length = meta.pop("crc"), meta.pop("length")
        stamp = Stamp(**meta)
        if not all(isinstance(v, int) for v in (crc, length, stamp.covered, stamp.size,
                                                    stamp.mtime_ns)):
            return None
        if length != len(body) or crc != zlib.crc32(body) or len(body) > _limit(stamp.covered):
            return None
        table = ipc.open_file(pa.py_buffer(body)).read_all()
        kinds = {t.id for t in table.schema.types}
        if not kinds <= _SCALARS:
            return None
        # past the structure (buffer sizes), full validation checks only string offsets
        table.validate(full=_STRING in kinds)
    except (OSError, ValueError, TypeError, KeyError, AttributeError, pa.ArrowException):
        return None
    return (stamp, table, data) if _valid(table) else None
