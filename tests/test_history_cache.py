"""The columnar history cache (tracking.history_cache) behind tracking.read_history: the same
frame as the plain line-by-line reader on the same bytes, always; a stale or damaged cache is
rebuilt from metrics.jsonl; readers racing a writer see whole prefixes; a read-only folder
reads without one."""
from __future__ import annotations

import math
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import pandas as pd
import pytest

from allocations import traced_peak
from curvewatch.tracking import HistoryReader, history_cache, read_history
from curvewatch.tracking.history_cache import CACHE_MIN_BYTES, CACHE_NAME, _load
from curvewatch.tracking.jsonio import dumps

ROOT = Path(__file__).resolve().parent.parent
#: Enough epochs of trainer-like records for metrics.jsonl to pass CACHE_MIN_BYTES.
EPOCHS = 500


def record(e: int) -> dict:
    """One epoch as the trainer writes it (values from a formula, all distinct floats)."""
    return {"epoch": e, "step": 30 * e, "time": 1.7e9 + e / 3, "train_loss": 2 * math.exp(-e / 40),
            "val_loss": 2 * math.exp(-e / 50) + 0.1 + e / 1e4, "train_acc": 1 - 1 / (e + 1),
            "val_acc": 0.9 - 1 / (e + 2), "grad_norm": 1 / math.sqrt(e), "grad_norm_max": 2 / e,
            "lr": 1e-3, "epoch_seconds": 0.2 + e % 7 / 100, "samples_per_second": 5000.0 + e}


def write(run: Path, lines: list, tail: bytes = b"") -> Path:
    """metrics.jsonl of `lines` (dicts as the writer encodes them, bytes as they are)."""
    run.mkdir(parents=True, exist_ok=True)
    body = b"".join((x if isinstance(x, bytes) else dumps(x).encode()) + b"\n" for x in lines)
    (run / "metrics.jsonl").write_bytes(body + tail)
    return run


def plain(run: Path) -> pd.DataFrame:
    """The line-by-line reader alone, without the cache."""
    return HistoryReader(run, cache=False).read()


def assert_same(run: Path) -> pd.DataFrame:
    """read_history cold (building the cache) and warm (from it) both equal the plain read."""
    expected = plain(run)
    for _ in range(2):
        pd.testing.assert_frame_equal(read_history(run), expected)
    return expected


def cached(run: Path) -> bool:
    return _load(run / CACHE_NAME) is not None


def trainer_lines(n: int = EPOCHS) -> list:
    return [record(e) for e in range(1, n + 1)]


def test_trainer_history_is_cached_and_read_back_identically(tmp_path):
    run = write(tmp_path / "r", trainer_lines())
    assert (run / "metrics.jsonl").stat().st_size > CACHE_MIN_BYTES
    frame = assert_same(run)
    assert cached(run)
    assert list(frame["epoch"]) == list(range(1, EPOCHS + 1))
    assert frame["step"].dtype == "int64" and "absent" not in frame


def sparse(lines: list) -> list:
    """Validation every 2nd epoch, a test metric only at the end: absent, not NaN."""
    out = []
    for r in lines:
        r = dict(r)
        if r["epoch"] % 2:
            del r["val_loss"], r["val_acc"]
        out.append(r)
    out[-1]["test_loss"] = 0.5
    return out


def nan_logged(lines: list) -> list:
    """A run that diverges: "NaN", "Infinity" and "-Infinity" logged as values."""
    out = [dict(r) for r in lines]
    for r in out[300:]:
        r.update(train_loss=math.nan, val_loss=math.inf, grad_norm=-math.inf)
    out[10]["val_acc"] = math.nan
    return out


def duplicates(lines: list) -> list:
    """A resumed loop that logged epochs again and out of order: the last record wins."""
    again = [dict(r, train_loss=r["train_loss"] + 1) for r in lines[100:120]]
    return lines[:200] + again + lines[200:] + [dict(lines[5], lr=0.5)]


def mixed_kinds(lines: list) -> list:
    """An int metric that turns float, a text column, nested values (left out), bools."""
    out = []
    for r in lines:
        r = dict(r, count=r["epoch"] if r["epoch"] < 250 else r["epoch"] + 0.5,
                 phase="warmup" if r["epoch"] < 20 else "main", done=r["epoch"] == EPOCHS,
                 extra={"a": [1, 2], "b": {"c": r["epoch"]}})
        out.append(r)
    return out


def many_sparse(lines: list) -> list:
    """25 metrics, each logged on its own subset of epochs (more hole patterns than bits)."""
    return [dict(r, **{f"m{k}": r["epoch"] / (k + 1) for k in range(25)
                       if (r["epoch"] + k) % (k % 4 + 2)}) for r in lines]


def int_holes(lines: list) -> list:
    """An int metric logged every other epoch (pandas reads it as floats with NaN)."""
    return [r if r["epoch"] % 2 else {k: v for k, v in r.items() if k != "step"} for r in lines]


def thinning(lines: list) -> list:
    """After 250 epochs only the losses are logged: shorter lines, more rows a byte than the
    first lines (a reader sizing its columns from them must make room)."""
    return [r if r["epoch"] <= 250 else {k: r[k] for k in ("epoch", "train_loss", "val_loss")}
            for r in lines]


def int_turns_float(lines: list) -> list:
    """A count logged as an int, then (from epoch 250) as a float."""
    return [dict(r, count=r["epoch"] if r["epoch"] < 250 else r["epoch"] + 0.5) for r in lines]


def late_metric(lines: list) -> list:
    """A metric that first appears after many epochs (after the first parse chunk too)."""
    return [dict(r, ema=r["val_loss"] * 0.9) if r["epoch"] > 450 else r for r in lines]


@pytest.mark.parametrize("shape", [sparse, nan_logged, duplicates, mixed_kinds, late_metric,
                                   many_sparse, int_holes, thinning, int_turns_float])
def test_fast_path_matches_the_plain_reader(tmp_path, shape):
    run = write(tmp_path / "r", shape(trainer_lines()))
    frame = assert_same(run)
    assert cached(run), "the pyarrow path read it and kept a cache"
    if shape is sparse:
        assert frame.loc[0, "absent"] == "val_loss,val_acc,test_loss"
        assert frame.loc[1, "absent"] == "test_loss" and frame["absent"].iloc[-1] == ""
    if shape is nan_logged:
        assert math.isnan(frame.loc[400, "train_loss"]) and frame.loc[400, "val_loss"] == math.inf
        assert "absent" not in frame, "a logged NaN is a value, not an absent cell"
    if shape is duplicates:
        assert frame["epoch"].is_unique and frame.loc[5, "lr"] == 0.5


@pytest.mark.parametrize("shape", [sparse, mixed_kinds, late_metric, int_holes])
def test_many_parse_blocks_read_as_one(tmp_path, monkeypatch, shape):
    """pyarrow parses a piece in blocks on its threads: with blocks of a few lines, a column
    that turns float, or first appears, or has holes in a later block, reads as in one, its
    columns in the plain reader's order whichever block its threads finish first (a race:
    read cold a few times)."""
    monkeypatch.setattr(history_cache, "BLOCK_BYTES", 4096)
    run = write(tmp_path / "r", shape(trainer_lines()))
    assert (run / "metrics.jsonl").stat().st_size > 20 * history_cache.BLOCK_BYTES
    for _ in range(5):
        (run / CACHE_NAME).unlink(missing_ok=True)
        assert_same(run)
        assert cached(run)


@pytest.mark.parametrize("shape", [sparse, late_metric, int_holes, nan_logged, thinning,
                                   int_turns_float])
def test_a_history_parsed_in_pieces_is_cached_in_one_record_batch(tmp_path, monkeypatch, shape):
    """However many pieces and blocks the parse took (holes, a column first seen in a later
    piece, an int column turned float), the cache holds each column in one chunk, which a
    later read views without joining, and reads as the plain reader."""
    monkeypatch.setattr(history_cache, "CHUNK_BYTES", 16 << 10)
    monkeypatch.setattr(history_cache, "BLOCK_BYTES", 4096)
    run = write(tmp_path / "r", shape(trainer_lines()))
    assert (run / "metrics.jsonl").stat().st_size > 4 * history_cache.CHUNK_BYTES
    assert_same(run)
    _, table, _ = _load(run / CACHE_NAME)
    assert [c.num_chunks for c in table.columns] == [1] * table.num_columns


def test_a_cached_history_is_read_without_a_copy_of_its_columns(tmp_path):
    """From the cache, the frame's columns view the bytes read from the file: the read
    allocates about one frame (tracemalloc sees the bytes and numpy), not the bytes and a
    copy of every column as well."""
    run = write(tmp_path / "r", trainer_lines(20_000))
    read_history(run)  # cold: builds the cache
    frame, peak = traced_peak(lambda: read_history(run))
    assert cached(run)
    size = frame.memory_usage(index=False).sum()
    assert peak < 1.5 * size, (peak, size)




@pytest.mark.parametrize("read", ["cold", "warm"])
def test_a_history_is_a_frame_its_caller_may_edit(tmp_path, read):
    """Viewing the parsed columns or the cache's bytes is invisible to the caller: a cell set,
    a column scaled in place, and no later read sees either."""
    run = write(tmp_path / "r", trainer_lines(20_000))
    if read == "warm":
        read_history(run)
    frame = read_history(run)
    assert cached(run)
    before = frame["val_loss"].iloc[1]
    frame.loc[0, "val_loss"] = 123.0
    frame["val_loss"] *= 2
    assert frame["val_loss"].iloc[0] == 246.0 and frame["val_loss"].iloc[1] == 2 * before
    again = read_history(run)
    assert again["val_loss"].iloc[1] == before and again["val_loss"].iloc[0] != 123.0
@pytest.mark.parametrize("shape", [thinning, int_turns_float, int_holes, late_metric])
def test_columns_in_memory_of_their_own_read_and_edit_as_any(tmp_path, monkeypatch, shape):
    """Columns past HUGE_BYTES are put in memory mapped for them (not numpy's huge pages):
    whether the room grew, a column turned float or has holes, the frame reads as the plain
    reader's, outlives the read that made it, and may be edited without a later read
    seeing it."""
    monkeypatch.setattr(history_cache, "HUGE_BYTES", 1024)
    monkeypatch.setattr(history_cache, "CHUNK_BYTES", 16 << 10)
    run = write(tmp_path / "r", shape(trainer_lines()))
    frame = read_history(run)
    assert cached(run)
    expected = assert_same(run)
    pd.testing.assert_frame_equal(frame, expected)
    frame.loc[0, "train_loss"] = 123.0
    assert read_history(run)["train_loss"].iloc[0] == expected["train_loss"].iloc[0] != 123.0


def test_torn_last_line_is_left_for_the_next_read(tmp_path):
    lines = trainer_lines()
    run = write(tmp_path / "r", lines, tail=b'{"epoch": 501, "train_lo')
    assert len(assert_same(run)) == EPOCHS
    with open(run / "metrics.jsonl", "ab") as f:
        f.write(b'ss": 0.1}\n')
    frame = assert_same(run)
    assert len(frame) == EPOCHS + 1 and frame["train_loss"].iloc[-1] == 0.1


PLAIN_ONLY = {
    "corrupt line": [b'{"epoch": 3, "train_loss": 0.1'],
    "explicit null": [{"epoch": 501, "val_loss": None}],
    "blank line": [b""],
    "two objects on a line": [b'{"epoch": 501} {"epoch": 502}'],
    "not an object": [b"[1, 2]"],
    "bool epoch": [{"epoch": True, "x": 1}],
    "epoch 0": [{"epoch": 0, "x": 1}],
    "string epoch": [{"epoch": "501"}],
    "int past int64": [{"epoch": 501, "big": 2**70}],
    "negative int past int64": [{"epoch": 501, "big": -(2**64)}],
    "int past the float range": [b'{"epoch": 501, "big": 1' + b"0" * 400 + b"}"],
    "negative int past the float range": [b'{"epoch": 501, "big": -1' + b"0" * 400 + b"}"],
    "ISO date text": [{"epoch": 501, "when": "2026-01-01"}],
    "a key named absent": [{"epoch": 501, "absent": "x"}],
    "duplicate key": [b'{"epoch": 501, "a": 1, "a": 2}'],
    "text and number": [{"epoch": 501, "val_loss": "high"}],
    "NaN as text among text": [{"epoch": 501, "p": "a"}, {"epoch": 502, "p": "NaN"}],
    "bad UTF-8": [b'{"epoch": 501, "p": "\xff"}'],
    "Inf spelt as pyarrow reads it": [b'{"epoch": 501, "x": Inf}'],
    "deep nesting": [b'{"epoch": 501, "x": ' + b"[" * 70 + b"]" * 70 + b"}"],
    "line over 1 MiB": [b'{"epoch": 501, "x": "' + b"a" * (1 << 20) + b'"}'],
    "list of mixed kinds": [{"epoch": 501, "x": [1, "a", {"b": 2}]}],
    "bool with holes": [{"epoch": 501, "ok": True}, {"epoch": 502}],
}


@pytest.mark.parametrize("case", sorted(PLAIN_ONLY))
def test_what_pyarrow_would_read_differently_goes_to_the_plain_reader(tmp_path, case):
    run = write(tmp_path / "r", trainer_lines() + PLAIN_ONLY[case])
    assert_same(run)
    assert not (run / CACHE_NAME).exists(), "only the pyarrow path's tables are cached"


@pytest.mark.parametrize("case", sorted(PLAIN_ONLY))
def test_a_middle_piece_may_send_the_read_to_the_plain_reader(tmp_path, monkeypatch, case):
    """A history of many pieces, the pieces before it already joined into columns: a line only
    the plain reader reads right, in a middle piece, still gives the plain reader's frame and
    no cache."""
    monkeypatch.setattr(history_cache, "CHUNK_BYTES", 16 << 10)
    lines = trainer_lines()
    run = write(tmp_path / "r", lines[:250] + PLAIN_ONLY[case] + lines[250:])
    assert (run / "metrics.jsonl").stat().st_size > 8 * history_cache.CHUNK_BYTES
    assert_same(run)
    assert not (run / CACHE_NAME).exists(), "only the pyarrow path's tables are cached"


def test_a_line_nested_thousands_deep_never_reaches_pyarrows_parser(tmp_path, monkeypatch):
    """pyarrow takes about a second over one line nested 3,000 deep, which the plain reader
    refuses at once: such a piece goes to the plain reader without being parsed."""
    parsed: list[bytes] = []
    parse = history_cache.pj.read_json
    monkeypatch.setattr(history_cache.pj, "read_json",
                        lambda source, **kw: parsed.append(source.read()) or parse(
                            history_cache.pa.BufferReader(parsed[-1]), **kw))
    monkeypatch.setattr(history_cache, "CHUNK_BYTES", 16 << 10)  # pieces before it parse
    deep = b'{"epoch": 501, "x": ' + b"[" * 3000 + b"]" * 3000 + b"}"
    lines = trainer_lines()
    run = write(tmp_path / "r", lines[:250] + [deep] + lines[250:])
    assert_same(run)
    assert parsed and not any(b"[" * 100 in data for data in parsed)


def test_short_lists_on_every_line_still_take_the_fast_path(tmp_path):
    lines = [{**line, "sizes": [3, 4]} for line in trainer_lines()]
    run = write(tmp_path / "r", lines)
    assert_same(run)
    assert (run / CACHE_NAME).exists()


def test_small_missing_and_empty_files(tmp_path):
    small = write(tmp_path / "small", trainer_lines(5))
    assert len(assert_same(small)) == 5 and not (small / CACHE_NAME).exists()
    empty = write(tmp_path / "empty", [])
    assert assert_same(empty).empty
    (tmp_path / "none").mkdir()
    assert assert_same(tmp_path / "none").empty


def test_appended_epochs_are_seen_and_the_cache_follows(tmp_path):
    run = write(tmp_path / "r", trainer_lines())
    assert_same(run)
    for e in range(EPOCHS + 1, EPOCHS + 4):  # a few: read as cache + appended bytes
        with open(run / "metrics.jsonl", "ab") as f:
            f.write(dumps(record(e)).encode() + b"\n")
        assert assert_same(run)["epoch"].iloc[-1] == e
    with open(run / "metrics.jsonl", "ab") as f:  # many: the cache is rewritten to cover them
        f.write(b"".join(dumps(record(e)).encode() + b"\n" for e in range(EPOCHS + 4, 1200)))
    assert len(assert_same(run)) == 1199
    stamp, _, _ = _load(run / CACHE_NAME)
    assert stamp.covered == (run / "metrics.jsonl").stat().st_size


def test_appended_new_column_and_holes_match(tmp_path):
    run = write(tmp_path / "r", trainer_lines())
    assert_same(run)
    with open(run / "metrics.jsonl", "ab") as f:
        f.write(dumps({"epoch": EPOCHS + 1, "train_loss": 0.3, "test_acc": 0.5}).encode() + b"\n")
    frame = assert_same(run)
    assert frame["absent"].iloc[0] == "test_acc" and frame["absent"].iloc[-1].startswith("step")


def test_rewritten_or_shrunk_file_is_never_served_from_the_old_cache(tmp_path):
    run = write(tmp_path / "r", trainer_lines())
    assert_same(run)
    changed = trainer_lines()
    changed[250]["val_loss"] = 123.0  # same epochs, a value changed in the middle
    write(run, changed)
    assert assert_same(run).loc[250, "val_loss"] == 123.0
    write(run, trainer_lines(300))  # shorter than what the cache covers
    assert len(assert_same(run)) == 300
    write(run, [dict(r, train_loss=0.0) for r in trainer_lines(EPOCHS + 50)])  # longer, new head
    assert (assert_same(run)["train_loss"] == 0.0).all()


def test_same_size_rewrite_is_not_served_from_the_old_cache(tmp_path):
    """Rewritten in place with the same size and the same first and last bytes: only the
    mtime tells, and a file that changed without growing is read afresh."""
    run = write(tmp_path / "r", trainer_lines())
    assert_same(run)
    same_size = trainer_lines()
    same_size[250]["lr"] = 2e-3
    write(run, same_size)
    st = (run / "metrics.jsonl").stat()
    os.utime(run / "metrics.jsonl", ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    assert assert_same(run).loc[250, "lr"] == 2e-3


def append(run: Path, *lines) -> None:
    with open(run / "metrics.jsonl", "ab") as f:
        f.write(b"".join(x if isinstance(x, bytes) else dumps(x).encode() + b"\n"
                         for x in lines))


def test_a_follower_starts_from_the_cache_and_reads_as_the_plain_one(tmp_path):
    """HistoryReader (the live tick) starts from the cache, keeps no records for the rows it
    holds, and after every kind of append gives what a plain follower gives."""
    run = write(tmp_path / "r", sparse(trainer_lines()))
    assert_same(run)
    follower, plain_one = HistoryReader(run), HistoryReader(run, cache=False)
    pd.testing.assert_frame_equal(follower.read(), plain_one.read())
    assert follower._rows == [], "the cached rows were not parsed again"
    steps = [
        [record(501)],                               # in order: appended to the frame
        [b'{"epoch": 502, "train_lo'],              # torn: left for the next read
        [b'ss": 0.2}\n'],
        [dict(record(503), extra_metric=1.0)],       # a new column: rebuilt from the file
        [record(504), dict(record(7), lr=0.5)],      # out of order: rebuilt
        [record(505)],
    ]
    for lines in steps:
        append(run, *lines)
        pd.testing.assert_frame_equal(follower.read(), plain_one.read())
    assert follower.read()["epoch"].iloc[-1] == 505


def damage_cut(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def damage_flip(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) * 3 // 4] ^= 0xFF
    path.write_bytes(bytes(data))


def damage_garbage(path: Path) -> None:
    path.write_bytes(os.urandom(5000))


def damage_empty(path: Path) -> None:
    path.write_bytes(b"")


def damage_header(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[:16] + data[16:].replace(b'"covered"', b'"covered!"', 1))


def damage_folder(path: Path) -> None:
    path.unlink()
    path.mkdir()


@pytest.mark.parametrize("damage", [damage_cut, damage_flip, damage_garbage, damage_empty,
                                    damage_header, damage_folder])
def test_damaged_cache_is_rebuilt_with_the_same_result(tmp_path, damage):
    run = write(tmp_path / "r", sparse(trainer_lines()))
    expected = assert_same(run)
    damage(run / CACHE_NAME)
    assert not cached(run)
    pd.testing.assert_frame_equal(read_history(run), expected)
    if damage is not damage_folder:  # a folder in its place is left alone
        assert cached(run), "rebuilt"


def test_a_cache_from_another_file_is_not_trusted(tmp_path):
    """A cache copied in from another run (same size, so only its stamp can tell)."""
    a = write(tmp_path / "a", trainer_lines())
    b = write(tmp_path / "b", [dict(r, lr=2e-3) for r in trainer_lines()])
    assert_same(a)
    shutil.copy(a / CACHE_NAME, b / CACHE_NAME)
    assert (read_history(b)["lr"] == 2e-3).all()


def test_symlinked_cache_is_not_followed(tmp_path):
    run = write(tmp_path / "r", trainer_lines())
    other = write(tmp_path / "other", [dict(r, lr=9.0) for r in trainer_lines()])
    assert_same(other)
    os.symlink(other / CACHE_NAME, run / CACHE_NAME)
    assert (read_history(run)["lr"] == 1e-3).all()
    assert_same(run)
    assert not (run / CACHE_NAME).is_symlink() and cached(other)


WRITER = """
import sys
from curvewatch.tracking.jsonl import JsonlAppender
from tests.test_history_cache import record
out = JsonlAppender(sys.argv[1])
for e in range(int(sys.argv[2]), int(sys.argv[3])):
    out.append(record(e))
"""


def test_readers_racing_a_writer_see_whole_prefixes(tmp_path):
    """A real writer process appends epochs while this process reads in a loop: every read
    is epochs 1..k exactly as written, k never goes back, and the last read sees them all."""
    run = write(tmp_path / "r", trainer_lines())
    last = 4000
    writer = subprocess.Popen([sys.executable, "-c", WRITER, str(run / "metrics.jsonl"),
                               str(EPOCHS + 1), str(last + 1)], cwd=ROOT,
                              env={**os.environ, "PYTHONPATH": str(ROOT / "tests")})  # allocations
    expected = pd.DataFrame.from_records(trainer_lines(last))
    follower = HistoryReader(run)  # the dashboard's live tick: cache, then appended bytes
    seen, reads = 0, 0
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        done = writer.poll() is not None
        frame = read_history(run)
        k = len(frame)
        assert k >= seen and list(frame.columns) == list(expected.columns)
        pd.testing.assert_frame_equal(frame, expected.iloc[:k])
        followed = follower.read()
        pd.testing.assert_frame_equal(followed, expected.iloc[:len(followed)])
        seen, reads = k, reads + 1
        if done:
            break
    assert writer.wait(5) == 0 and seen == last and reads > 2
    assert len(follower.read()) == last
    assert cached(run) and _load(run / CACHE_NAME)[0].covered > 2 * CACHE_MIN_BYTES


CHILD = """
import sys
import pandas as pd
from curvewatch.tracking import HistoryReader, history_cache, read_history
run = sys.argv[1]
pd.testing.assert_frame_equal(read_history(run), HistoryReader(run, cache=False).read())
print("same")
"""


def test_read_only_folder_reads_without_a_cache(tmp_path):
    run = write(tmp_path / "r", sparse(trainer_lines()))
    if os.geteuid() != 0:
        run.chmod(0o555)
        try:
            assert_same(run)
        finally:
            run.chmod(0o755)
    else:  # root writes anywhere: a read-only bind mount in a user + mount namespace
        unshare = shutil.which("unshare")
        if unshare is None:
            pytest.skip("root without unshare(1): no way to make a folder read-only")
        child = tmp_path / "child.py"
        child.write_text(CHILD)
        script = (f"mount --bind {run} {run} && mount -o remount,bind,ro {run} && "
                  f"{sys.executable} {child} {run}")
        done = subprocess.run([unshare, "-rm", "sh", "-c", script], cwd=ROOT,
                              capture_output=True, text=True, timeout=120)
        if "mount" in done.stderr and done.returncode != 0:
            pytest.skip(f"no read-only bind mount here: {done.stderr.strip()[:200]}")
        assert done.returncode == 0 and done.stdout.strip() == "same", done.stderr
    assert not (run / CACHE_NAME).exists()
    assert not [p for p in run.iterdir() if p.name.endswith(".tmp")]


def test_two_readers_rebuilding_at_once_each_get_the_whole_history(tmp_path):
    """Two readers find no cache and build it at the same moment, again and again: each
    read equals the plain reader's, the cache left is whole (one atomic replace won), and
    no temporary file stays behind."""
    run = write(tmp_path / "r", sparse(trainer_lines()))
    expected, start = plain(run), threading.Barrier(2)
    results: list = []

    def reader() -> None:
        for _ in range(8):
            start.wait(timeout=60)
            (run / CACHE_NAME).unlink(missing_ok=True)  # both find it missing, or one's new
            results.append(read_history(run))

    threads = [threading.Thread(target=reader) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert len(results) == 16
    for frame in results:
        pd.testing.assert_frame_equal(frame, expected)
    assert cached(run) and not [p for p in run.iterdir() if p.name.endswith(".tmp")]
