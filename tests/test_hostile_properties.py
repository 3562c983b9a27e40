"""Issue 15, property-based: Hypothesis generates hostile run folders (field types, nesting,
sizes, encodings, file types: FIFOs, devices, folders and symlinks where files belong,
permissions) and checks that `list_runs`, `list_groups` and every reader return without
raising or hanging and never return anything from outside the runs directory; then that the
Runs, Run and Compare pages render a sample of them with a bad run listed as unreadable.

Each example runs under a 5 s alarm (a reader blocked on a FIFO is interrupted and counted as
a hang). The counters below are the figures docs/reliability.md quotes; each test asserts
them, so a run that generated fewer folders than claimed fails."""
from __future__ import annotations

import json
import os
import shutil
import signal
import stat
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

sys.path.insert(0, str(Path(__file__).resolve().parent))
import hostile as H  # noqa: E402
from curvewatch import tracking  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
FILES = ("run.json", "status.json", "metrics.jsonl", "layers.jsonl", "steps.jsonl",
         "trainer.log")
#: examples per property (the suite's figure: READER_EXAMPLES + GROUP_EXAMPLES folders)
READER_EXAMPLES = 2000
GROUP_EXAMPLES = 150
#: page examples: each lists FOLDERS_PER_PAGE_EXAMPLE hostile folders on the Runs page and
#: opens RUN_PAGES_PER_EXAMPLE of them (unreadable ones first) on the Run page; every page is a
#: full script run (~0.6 s), so the Run page sample is half the listed folders to keep CI in time
PAGE_EXAMPLES, FOLDERS_PER_PAGE_EXAMPLE, RUN_PAGES_PER_EXAMPLE = 10, 10, 5
DEADLINE = 5.0
SETTINGS = dict(deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                       HealthCheck.function_scoped_fixture,
                                       HealthCheck.large_base_example])

COUNTS = {"folders": 0, "group_folders": 0, "page_folders": 0, "pages": 0, "hangs": 0,
          "escapes": 0}


# ------------------------------------------------------------------ strategies
huge = st.sampled_from([10**400, -10**400, 10**300, 2**63, 2**31, -1, 0, 2**53 + 1])
leaf = st.one_of(st.none(), st.booleans(), st.integers(-10**6, 10**6), huge,
                 st.floats(allow_nan=True, allow_infinity=True),
                 st.sampled_from(["NaN", "Infinity", "-Infinity", "", "running", "completed",
                                  "failed", "crashed", "![x](http://h/x.png)", "\x00", "\ud800",
                                  "\u202e", "a" * 3000]),
                 st.text(max_size=12))
values = st.recursive(leaf, lambda c: st.one_of(st.lists(c, max_size=4),
                                                st.dictionaries(st.text(max_size=6), c,
                                                                max_size=4)),
                      max_leaves=8)
RUN_KEYS = ["name", "id", "group", "created_at", "config", "data", "model", "tags", "notes",
            "format"]
STATUS_KEYS = ["state", "pid", "pid_start", "host", "started_at", "updated_at", "ended_at",
               "heartbeat_seconds", "epoch", "epochs", "step", "best_epoch", "best_val_loss",
               "best_val_acc", "flags", "latest", "stop_reason", "stopped_by", "error",
               "resumes", "resumed_at"]
METRIC_KEYS = ["epoch", "step", "time", "train_loss", "val_loss", "val_acc", "lr", "grad_norm",
               "grad_norm_max", "loss", "x"]


T0 = float(int(time.time()))  # fixed for the session: the drawn bytes must not vary with it


def _base_run() -> dict[str, Any]:
    return {"format": 1, "name": "base", "group": None, "created_at": T0 - 60,
            "config": {"lr": 0.01, "hidden": [8]}, "data": {"dataset": "digits"},
            "model": {"name": "mlp", "text": "Linear"}, "tags": ["a"]}


def _base_status() -> dict[str, Any]:
    return {"format": 1, "state": "completed", "epoch": 2, "epochs": 2, "best_epoch": 2,
            "best_val_loss": 0.5, "latest": {"val_loss": 0.5, "lr": 0.01},
            "started_at": T0 - 60, "updated_at": T0,
            "heartbeat_seconds": 5}


def _dumps(obj: Any) -> str:
    return json.dumps(obj, allow_nan=True, ensure_ascii=False)


@st.composite
def json_file(draw: Any, keys: list[str], base: Any) -> bytes:
    """run.json / status.json bytes: a record with hostile fields, or hostile bytes."""
    kind = draw(st.sampled_from(["record", "record", "record", "record", "nested", "bytes",
                                 "encoded", "truncated", "not an object"]))
    rec = {**base(), **draw(st.dictionaries(st.sampled_from(keys), values, max_size=4))}
    text = _dumps(rec)
    if kind == "record":
        return text.encode("utf-8", "surrogatepass")
    if kind == "nested":
        n = draw(st.sampled_from([63, 64, 65, 200, 999, 3000, 100_000]))
        opener = draw(st.sampled_from(["[", '{"a": ']))
        closer = "]" if opener == "[" else "}"
        return (opener * n + "1" + closer * n * draw(st.sampled_from([0, 1]))).encode()
    if kind == "bytes":
        return draw(st.binary(max_size=200))
    if kind == "encoded":
        enc = draw(st.sampled_from(["utf-16", "utf-32", "latin-1", "utf-8-sig", "cp1252"]))
        return text.encode(enc, "replace")
    if kind == "truncated":
        b = text.encode("utf-8", "surrogatepass")
        return b[: draw(st.integers(0, max(0, len(b) - 1)))]
    return _dumps(draw(st.one_of(st.lists(values, max_size=3), leaf))).encode("utf-8",
                                                                              "surrogatepass")


@st.composite
def jsonl_file(draw: Any) -> bytes:
    lines = []
    for _ in range(draw(st.integers(0, 4))):
        kind = draw(st.sampled_from(["record", "record", "record", "nested", "bytes", "empty",
                                     "list"]))
        if kind == "record":  # mostly scalar fields (cheap to draw), now and then nested ones
            rec = draw(st.dictionaries(st.sampled_from(METRIC_KEYS), leaf, max_size=4))
            rec["epoch"] = draw(st.one_of(st.integers(1, 5), leaf))
            if draw(st.integers(0, 3)) == 0:
                rec[draw(st.sampled_from(METRIC_KEYS))] = draw(values)
            if draw(st.booleans()):
                rec["grad_norm"] = draw(st.one_of(
                    st.dictionaries(st.text(max_size=4), leaf, max_size=3), leaf))
            lines.append(_dumps(rec).encode("utf-8", "surrogatepass"))
        elif kind == "nested":
            n = draw(st.sampled_from([65, 999, 3000]))
            lines.append(b'{"epoch": 1, "x": ' + b"[" * n + b"]" * n + b"}")
        elif kind == "bytes":
            lines.append(draw(st.binary(max_size=80)).replace(b"\n", b" "))
        elif kind == "list":
            lines.append(b"[1, 2]")
        else:
            lines.append(b"")
    data = b"\n".join(lines)
    return data + (b"\n" if draw(st.booleans()) else b"")


#: what each file of a generated folder is: a sound file ("good"), hostile content in a
#: regular file, or a hostile file type
FILE_TYPES = ["good"] * 8 + ["content"] * 6 + [
    "absent", "directory", "fifo", "symlink out", "symlink /dev/zero", "symlink dangling",
    "symlink loop", "symlink inside", "char device", "mode 000", "huge sparse"]
FOLDER_TYPES = ["dir"] * 12 + ["symlink out", "regular file", "fifo", "mode 000"]


def _good_content(name: str) -> bytes:
    if name == "run.json":
        return _dumps(_base_run()).encode()
    if name == "status.json":
        return _dumps(_base_status()).encode()
    if name == "trainer.log":
        return b"epoch 1\n"
    if name == "layers.jsonl":
        return b'{"epoch": 1, "grad_norm": {"w": 0.1}}\n{"epoch": 2, "grad_norm": {"w": 0.2}}\n'
    if name == "steps.jsonl":
        return b'{"step": 10, "loss": 0.5}\n'
    return b'{"epoch": 1, "val_loss": 0.9, "train_loss": 1.0}\n{"epoch": 2, "val_loss": 0.5}\n'


@st.composite
def folder(draw: Any) -> dict[str, Any]:
    spec: dict[str, Any] = {"folder": draw(st.sampled_from(FOLDER_TYPES)), "files": {}}
    for name in FILES:
        ftype = draw(st.sampled_from(FILE_TYPES))
        if ftype != "content":
            spec["files"][name] = (ftype, _good_content(name))
            continue
        if name == "run.json":
            content = draw(json_file(RUN_KEYS, _base_run))
        elif name == "status.json":
            content = draw(json_file(STATUS_KEYS, _base_status))
        elif name == "trainer.log":
            content = draw(st.binary(max_size=300))
        else:
            content = draw(jsonl_file())
        spec["files"][name] = ("regular", content)
    return spec


def _zero_device(path: Path) -> None:
    try:
        os.mknod(path, 0o644 | stat.S_IFCHR, os.makedev(1, 5))
    except OSError:
        path.symlink_to("/dev/zero")


def _write_file(path: Path, ftype: str, content: bytes, out: Path) -> None:
    if ftype == "absent":
        return
    if ftype in ("good", "regular", "mode 000"):
        path.write_bytes(content)
        if ftype == "mode 000":
            os.chmod(path, 0)
    elif ftype == "directory":
        path.mkdir()
        (path / "x").write_bytes(content)
    elif ftype == "fifo":
        os.mkfifo(path)
    elif ftype == "symlink out":
        path.symlink_to(out / (path.name if (out / path.name).exists() else "secret.txt"))
    elif ftype == "symlink /dev/zero":
        path.symlink_to("/dev/zero")
    elif ftype == "symlink dangling":
        path.symlink_to(out / "nothing-here")
    elif ftype == "symlink loop":
        path.symlink_to(path.name)
    elif ftype == "symlink inside":
        path.symlink_to("status.json" if path.name != "status.json" else "run.json")
    elif ftype == "char device":
        _zero_device(path)
    elif ftype == "huge sparse":
        with open(path, "wb") as f:
            f.write(content[:100])
            f.truncate((5 << 20) + 7)
    else:
        raise AssertionError(ftype)


def write_folder(runs: Path, run_id: str, spec: dict[str, Any], out: Path) -> Path:
    path = runs / run_id
    kind = spec["folder"]
    if kind == "symlink out":
        target = Path(tempfile.mkdtemp(prefix="dir-", dir=out))
        for name in ("run.json", "status.json", "metrics.jsonl"):
            shutil.copy(out / name, target / name)
        path.symlink_to(target)
        return path
    if kind == "regular file":
        path.write_bytes(b"{}")
        return path
    if kind == "fifo":
        os.mkfifo(path)
        return path
    path.mkdir()
    for name, (ftype, content) in spec["files"].items():
        _write_file(path / name, ftype, content, out)
    if kind == "mode 000":
        os.chmod(path, 0)
    return path


# ------------------------------------------------------------------ deadline
class Hung(Exception):
    pass


@contextmanager
def deadline(seconds: float = DEADLINE) -> Iterator[None]:
    """Interrupt the block with Hung after `seconds` (SIGALRM; a blocking open of a FIFO is
    interrupted too, since the handler raises)."""
    def on_alarm(signum: int, frame: Any) -> None:
        raise Hung(f"no answer within {seconds:g}s")

    old = signal.signal(signal.SIGALRM, on_alarm)
    start = time.monotonic()
    outer, _ = signal.setitimer(signal.ITIMER_REAL, seconds)  # pytest-timeout's, if any
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)
        if outer > 0:  # give the outer alarm (pytest-timeout) back what is left of it
            signal.setitimer(signal.ITIMER_REAL, max(outer - (time.monotonic() - start), 1e-3))


@pytest.fixture(scope="module")
def scratch() -> Iterator[Path]:
    base = Path("/dev/shm") if os.access("/dev/shm", os.W_OK) else None
    d = Path(tempfile.mkdtemp(prefix="hostile-", dir=base))
    H.outside_dir(d)
    yield d
    H.release_fifos(d)
    _rmtree(d)


def _rmtree(d: Path) -> None:
    for dirpath, dirnames, _ in os.walk(d):
        for n in dirnames:
            p = os.path.join(dirpath, n)
            if not os.path.islink(p):
                os.chmod(p, 0o755)
    shutil.rmtree(d, ignore_errors=True)


def _remove(path: Path) -> None:
    if path.is_symlink() or (path.exists() and not path.is_dir()) or stat.S_ISFIFO(
            os.lstat(path).st_mode if os.path.lexists(path) else 0):
        path.unlink()
    elif path.exists():
        _rmtree(path)


def _fresh(scratch: Path) -> Path:
    runs = Path(tempfile.mkdtemp(prefix="runs-", dir=scratch))
    return runs


def _no_escape(*things: Any) -> None:
    for t in things:
        if hasattr(t, "columns"):  # a DataFrame: its names and its non-numeric cells
            text = " ".join(map(str, t.columns)) + " ".join(
                str(v) for c in t.columns if t[c].dtype.kind not in "fiub" for v in t[c])
        else:
            text = repr(t)
        if H.SECRET in text or "root:*" in text:
            COUNTS["escapes"] += 1
            raise AssertionError(f"read something from outside the runs directory: {text[:300]}")


def read_everything(runs: Path, skip: tuple[str, ...] = ()) -> list[Any]:
    """list_runs, list_groups and every reader on every folder (but those in `skip`, known
    good), under the deadline."""
    try:
        with deadline():
            infos = tracking.list_runs(runs)
            groups = tracking.list_groups(runs)
            for info in infos:
                H.check_info(info)
                _no_escape(info)
                if info.id not in skip and not info.path.is_symlink():
                    h = tracking.HistoryReader(info.path)
                    frames = [h.read(), h.read(), tracking.read_layers(info.path),
                              tracking.read_steps(info.path)]
                    _no_escape(*frames, h.problems)
                    log = tracking.read_log_tail(info.path)
                    assert isinstance(log, str) and len(log) <= 20_000
                    _no_escape(log)
            for g in groups:
                _no_escape(g)
                for m in g.members:
                    _no_escape(tracking.read_member_log(g, m.index))
    except Hung:
        COUNTS["hangs"] += 1
        raise
    return infos


# ------------------------------------------------------------------ properties
def test_any_hostile_run_folder_lists_and_reads_without_raising_hanging_or_escaping(scratch):
    before = COUNTS["folders"]

    runs = _fresh(scratch)
    good = H.good_run(runs, "good", epochs=2, log=False)

    @settings(max_examples=READER_EXAMPLES, **SETTINGS)
    @given(spec=folder())
    def prop(spec: dict[str, Any]) -> None:
        victim = runs / "20260101-000000-hostile-0000"
        try:
            write_folder(runs, victim.name, spec, scratch / "outside")
            COUNTS["folders"] += 1
            infos = read_everything(runs, skip=(good.name,))
            by_id = {i.id: i for i in infos}
            assert by_id[good.name].state == "completed"
            if spec["folder"] in ("dir", "symlink out", "mode 000"):
                assert victim.name in by_id  # one row, readable or not
            if spec["folder"] == "symlink out":
                assert by_id[victim.name].state == "unreadable"
        finally:
            H.release_fifos(victim)
            _remove(victim)

    prop()
    assert COUNTS["folders"] - before >= READER_EXAMPLES
    assert COUNTS["hangs"] == 0 and COUNTS["escapes"] == 0


@st.composite
def group_folder(draw: Any) -> dict[str, Any]:
    members = draw(st.lists(st.one_of(
        st.dictionaries(st.sampled_from(["index", "name", "state", "run_id", "fold", "seed",
                                         "setting", "params", "error", "exit_code"]), values,
                        max_size=5), leaf), max_size=3))
    agg = draw(st.one_of(st.none(), leaf, st.dictionaries(
        st.sampled_from(["members", "curves", "scores", "per_member", "ranking"]), values,
        max_size=4), st.fixed_dictionaries({
            "scores": st.dictionaries(st.sampled_from(["val_loss", "val_acc"]),
                                      st.dictionaries(st.sampled_from(["mean", "std", "n",
                                                                       "values"]), values),
                                      max_size=2),
            "ranking": st.lists(st.dictionaries(st.sampled_from(
                ["rank", "setting", "params", "members", "failed", "val_loss"]), values,
                max_size=4), max_size=3)})))
    rec = {"format": 1, "kind": "group", "name": draw(values), "method": draw(values),
           "validation": draw(values), "state": draw(st.sampled_from(
               ["running", "completed", "partial", "failed", "stopped"]) | leaf),
           "members": members, "aggregate": agg,
           **draw(st.dictionaries(st.sampled_from(
               ["created_at", "ended_at", "updated_at", "pid", "host", "repeat", "parallel",
                "sweep", "base_config", "stop_reason", "heartbeat_seconds"]), values,
               max_size=4))}
    return {"group.json": (draw(st.sampled_from(FILE_TYPES[1:])).replace("content", "regular"),
                           _dumps(rec).encode(
        "utf-8", "surrogatepass")), "logs": draw(st.sampled_from(["dir", "symlink out",
                                                                    "fifo", "absent"])),
            "curves": (draw(st.sampled_from(FILE_TYPES)).replace("content", "regular"),
                       draw(jsonl_file()))}


def test_any_hostile_group_folder_lists_and_reads_without_raising_or_hanging(scratch):
    before = COUNTS["group_folders"]

    runs = _fresh(scratch)
    good = H.good_run(runs, "good", epochs=2, log=False)
    out = scratch / "outside"

    @settings(max_examples=GROUP_EXAMPLES, **SETTINGS)
    @given(spec=group_folder())
    def prop(spec: dict[str, Any]) -> None:
        g = runs / "20260101-000000-group-0000"
        try:
            g.mkdir()
            _write_file(g / "group.json", *spec["group.json"], out)
            _write_file(g / "curves.jsonl", *spec["curves"], out)
            (out / "0.log").write_text(H.SECRET)
            if spec["logs"] == "dir":
                (g / "logs").mkdir()
                (g / "logs" / "0.log").write_text("fine")
            elif spec["logs"] == "symlink out":
                (g / "logs").symlink_to(out)
            elif spec["logs"] == "fifo":
                os.mkfifo(g / "logs")
            COUNTS["group_folders"] += 1
            read_everything(runs, skip=(good.name,))
            with deadline():
                for grp in tracking.list_groups(runs):
                    full = tracking.read_group(grp.path, curves=True)
                    _no_escape(full)
                    if full.state != "unreadable":
                        tracking.aggregate_group(full)
                    _no_escape(tracking.read_member_log(full, 0))
        finally:
            H.release_fifos(g)
            _remove(g)

    prop()
    assert COUNTS["group_folders"] - before >= GROUP_EXAMPLES
    assert COUNTS["hangs"] == 0 and COUNTS["escapes"] == 0


def _page(name: str, **query: str) -> Any:
    from streamlit.testing.v1 import AppTest
    at = AppTest.from_file(str(ROOT / "curvewatch" / "dashboard" / "views" / f"{name}.py"),
                           default_timeout=30)
    for k, v in query.items():
        at.query_params[k] = v
    return at


def test_pages_render_a_sample_of_hostile_folders_with_bad_runs_listed_unreadable(
        scratch, monkeypatch):
    """PAGE_EXAMPLES examples of FOLDERS_PER_PAGE_EXAMPLE hostile folders each: the Runs page
    once per example (every folder a row, the unreadable ones marked so with their reason),
    the Run page for RUN_PAGES_PER_EXAMPLE of them (unreadable ones first), Compare for the
    readable ones."""
    monkeypatch.chdir(ROOT)
    before = COUNTS["pages"]

    @settings(max_examples=PAGE_EXAMPLES, **SETTINGS)
    @given(specs=st.lists(folder(), min_size=FOLDERS_PER_PAGE_EXAMPLE,
                          max_size=FOLDERS_PER_PAGE_EXAMPLE))
    def prop(specs: list[dict[str, Any]]) -> None:
        runs = _fresh(scratch)
        monkeypatch.setenv("CURVEWATCH_RUNS", str(runs))
        try:
            goods = [H.good_run(runs, "good-a", epochs=2), H.good_run(runs, "good-b", epochs=2)]
            ids = []
            for i, spec in enumerate(specs):
                spec = {**spec, "folder": "dir" if spec["folder"] != "symlink out"
                        else "symlink out"}
                rid = f"20260101-0000{i:02d}-hostile-{i:04d}"
                write_folder(runs, rid, spec, scratch / "outside")
                ids.append(rid)
            infos = {i.id: i for i in read_everything(runs)}
            COUNTS["page_folders"] += len(ids)
            opened = sorted(ids, key=lambda r: infos[r].state != "unreadable")
            with deadline(60):
                at = _page("runs").run()
                COUNTS["pages"] += 1
                assert not at.exception, at.exception
                table = at.dataframe[0].value.set_index("id")
                for rid in ids:
                    assert rid in table.index
                    if infos[rid].state == "unreadable":
                        assert "unreadable" in table.loc[rid, "state"]
                        assert table.loc[rid, "problem"]
                for rid in opened[:RUN_PAGES_PER_EXAMPLE]:
                    at = _page("run", run=rid).run()
                    COUNTS["pages"] += 1
                    assert not at.exception, (rid, at.exception)
                    if infos[rid].path.is_symlink():  # never followed: "no run `id`"
                        assert any(rid in str(e.value) for e in at.warning)
                    elif infos[rid].state == "unreadable":
                        assert any("cannot be read" in str(e.value) for e in at.error), (
                            rid, infos[rid].problem, [str(e.value)[:200] for e in at.error],
                            [str(e.value)[:200] for e in at.warning])
                readable = [r for r in ids if infos[r].state != "unreadable"]
                at = _page("compare", runs=",".join([g.name for g in goods] + readable)).run()
                COUNTS["pages"] += 1
                assert not at.exception, at.exception
        finally:
            H.release_fifos(runs)
            _rmtree(runs)

    prop()
    rendered = COUNTS["pages"] - before
    assert rendered >= PAGE_EXAMPLES * (RUN_PAGES_PER_EXAMPLE + 2)
    assert COUNTS["page_folders"] >= PAGE_EXAMPLES * FOLDERS_PER_PAGE_EXAMPLE
    print(f"\nhostile-folder figures: {COUNTS}")
