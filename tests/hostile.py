"""Helpers for the hostile-input tests: good runs to damage, the named damages of issue 15,
and running a reader in a forked child with a deadline and a memory cap (so a regression that
blocks on a FIFO or reads /dev/zero without bound fails the test instead of the machine)."""
from __future__ import annotations

import os
import pickle
import resource
import select
import signal
import stat
import time
from pathlib import Path
from typing import Any, Callable

from curvewatch.tracking import Run

#: written into every file outside the runs directory; must never come back from a reader
SECRET = "SECRET-OUTSIDE-THE-RUNS-DIR-7f3a"


STATES = ("running", "completed", "stopped", "early_stopped", "failed", "crashed", "unreadable")


def check_info(info: Any) -> None:
    """What every RunInfo must look like, whatever its folder held."""
    assert info.state in STATES
    assert (info.state == "unreadable") == (info.problem is not None)
    if info.problem is not None:
        assert isinstance(info.problem, str) and 0 < len(info.problem) < 400, info.problem
        assert SECRET not in info.problem
    assert isinstance(info.name, str) and len(info.name) <= 400
    assert isinstance(info.tags, tuple) and all(isinstance(t, str) for t in info.tags)
    assert info.group is None or isinstance(info.group, str)
    assert info.created_at is None or (isinstance(info.created_at, float)
                                       and 0 <= info.created_at < 1e10)
    for x in (info.epoch, info.epochs, info.best_epoch):
        assert x is None or (isinstance(x, int) and 0 <= x <= 10**12)
    assert info.best_val_loss is None or isinstance(info.best_val_loss, float)
    st = info.status
    assert isinstance(st, dict)
    assert st.get("latest") is None or isinstance(st["latest"], dict)
    by = st.get("stopped_by")
    assert by is None or (isinstance(by, dict) and isinstance(by.get("kind"), str))
    for k in ("error", "stop_reason", "host"):
        assert st.get(k) is None or isinstance(st[k], str)
    for d in (info.config, info.data, info.model):
        assert isinstance(d, dict)
    assert SECRET not in repr(info)


def good_run(root: Path, name: str = "good", epochs: int = 3, *, log: bool = True) -> Path:
    """A completed writer run with metrics, layers, steps and a trainer.log."""
    with Run.create(root, name=name, epochs=epochs, heartbeat_seconds=0, tags=["t"],
                    config={"lr": 0.01, "hidden": [8, 4]}) as run:
        for e in range(epochs):
            run.log_step((e + 1) * 10, loss=1.0 / (e + 1))
            run.log_epoch(train_loss=1.0 / (e + 1), val_loss=1.2 / (e + 1), val_acc=0.5,
                          lr=0.01, grad_norm=0.3, layers={"w": 0.1, "b": 0.01})
    if log:
        (run.path / "trainer.log").write_text("epoch 1\nepoch 2\n")
    return run.path


def outside_dir(tmp: Path) -> Path:
    """A folder beside the runs directory holding files that must never be read."""
    out = tmp / "outside"
    out.mkdir(exist_ok=True)
    (out / "secret.txt").write_text(f"{SECRET}\nroot:*:20228:0:99999:7:::\n")
    (out / "run.json").write_text(f'{{"name": "{SECRET}", "tags": ["{SECRET}"]}}')
    (out / "status.json").write_text(f'{{"state": "completed", "stop_reason": "{SECRET}"}}')
    (out / "metrics.jsonl").write_text(f'{{"epoch": 1, "{SECRET}": 1.0}}\n')
    return out


def _patch_json(path: Path, text_fragment: str) -> None:
    """Replace run.json/status.json by a JSON object with `text_fragment` spliced in as its
    last members (raw text, so numbers like 10**400 stay exactly as written; a repeated key
    takes the last value, as Python's parser does)."""
    import json
    base = json.loads(path.read_text())
    path.write_text(json.dumps(base)[:-1] + ", " + text_fragment + "}")


def _status(run: Path, fragment: str) -> None:
    _patch_json(run / "status.json", fragment)


def _running_here(run: Path, fragment: str) -> None:
    """status.json of a live-looking run on this host (so the pid is checked), plus a field."""
    import json
    import socket
    st = json.loads((run / "status.json").read_text())
    st.update(state="running", host=socket.gethostname(), updated_at=time.time(),
              heartbeat_seconds=5)
    st.pop("pid", None)
    (run / "status.json").write_text(json.dumps(st)[:-1] + ", " + fragment + "}")


def _fifo(path: Path) -> None:
    if path.is_dir():
        path.rmdir()
    elif path.exists() or path.is_symlink():
        path.unlink()
    os.mkfifo(path)


def _replace_with_dir(path: Path) -> None:
    if path.exists() or path.is_symlink():
        path.unlink()
    path.mkdir()
    (path / "x").write_text("{}")


def _symlink(path: Path, target: str | Path) -> None:
    if path.exists() or path.is_symlink():
        path.unlink()
    path.symlink_to(target)


def _deep_metrics_line(run: Path) -> None:
    with open(run / "metrics.jsonl", "ab") as f:
        f.write(b'{"epoch": 4, "x": ' + b"[" * 3000 + b"]" * 3000 + b"}\n")
        f.write(b'{"epoch": 5, "val_loss": 0.1}\n')


def _huge_number_metrics_line(run: Path) -> None:
    with open(run / "metrics.jsonl", "ab") as f:
        f.write(b'{"epoch": 4, "val_loss": 1' + b"0" * 400 + b"}\n")
        f.write(b'{"epoch": 5, "val_loss": 0.1}\n')


def _zero_device(path: Path) -> None:
    """A character device node like /dev/zero inside the run folder (needs CAP_MKNOD, else a
    symlink to /dev/zero, which the O_NOFOLLOW open refuses the same way)."""
    if path.exists() or path.is_symlink():
        path.unlink()
    try:
        os.mknod(path, 0o644 | stat.S_IFCHR, os.makedev(1, 5))
    except (PermissionError, OSError):
        path.symlink_to("/dev/zero")


BIG = "1" + "0" * 400  # 10**400: more than a float holds

#: name -> (damage(run_dir, outside_dir), what list_runs must say: "unreadable" or "readable")
DAMAGES: dict[str, tuple[Callable[[Path, Path], None], str]] = {
    "tags not a list": (lambda r, o: _patch_json(r / "run.json", '"tags": 5'), "readable"),
    "tags a dict of lists": (lambda r, o: _patch_json(r / "run.json", '"tags": {"a": [1]}'),
                             "readable"),
    "name a dict": (lambda r, o: _patch_json(r / "run.json", '"name": {"x": [1, 2]}'),
                    "readable"),
    "run.json nested 100000 deep": (lambda r, o: (r / "run.json").write_text("[" * 100_000),
                                    "unreadable"),
    "status.json nested 100000 deep": (
        lambda r, o: (r / "status.json").write_text('{"a": ' * 100_000), "unreadable"),
    "run.json nested 500 deep": (
        lambda r, o: _patch_json(r / "run.json", '"config": ' + "[" * 500 + "]" * 500),
        "unreadable"),
    "best_val_loss 10**400": (lambda r, o: _status(r, f'"best_val_loss": {BIG}'), "unreadable"),
    "epoch 10**400": (lambda r, o: _status(r, f'"epoch": {BIG}'), "unreadable"),
    "pid 10**400 of a live-looking run": (lambda r, o: _running_here(r, f'"pid": {BIG}'),
                                          "unreadable"),
    "pid 10**30 of a live-looking run": (lambda r, o: _running_here(r, '"pid": ' + "1" * 31),
                                         "readable"),
    "epoch 10**300": (lambda r, o: _status(r, '"epoch": 1' + "0" * 300), "readable"),
    "best_val_loss a huge int": (lambda r, o: _status(r, '"best_val_loss": 1' + "0" * 300),
                                 "readable"),
    "created_at 1e300": (lambda r, o: _patch_json(r / "run.json", '"created_at": 1e300'),
                         "readable"),
    "created_at Infinity": (lambda r, o: _patch_json(r / "run.json", '"created_at": "Infinity"'),
                            "readable"),
    "status latest a list": (lambda r, o: _status(r, '"latest": [1, 2]'), "readable"),
    "stopped_by.kind an int": (
        lambda r, o: _status(r, '"stop_reason": "x", "stopped_by": {"kind": 5, "severity": 3}'),
        "readable"),
    "error not a string": (lambda r, o: _status(r, '"state": "failed", "error": {"a": 1}'),
                           "readable"),
    "model text not a string": (lambda r, o: _patch_json(r / "run.json",
                                                         '"model": {"text": [1, 2]}'),
                                "readable"),
    "run.json a FIFO": (lambda r, o: _fifo(r / "run.json"), "unreadable"),
    "status.json a FIFO": (lambda r, o: _fifo(r / "status.json"), "unreadable"),
    "run.json a directory": (lambda r, o: _replace_with_dir(r / "run.json"), "unreadable"),
    "status.json a directory": (lambda r, o: _replace_with_dir(r / "status.json"), "unreadable"),
    "run.json a symlink out of the run folder": (
        lambda r, o: _symlink(r / "run.json", o / "run.json"), "unreadable"),
    "status.json a symlink out of the run folder": (
        lambda r, o: _symlink(r / "status.json", o / "status.json"), "unreadable"),
    "status.json a character device": (lambda r, o: _zero_device(r / "status.json"),
                                       "unreadable"),
    "metrics.jsonl a directory": (lambda r, o: _replace_with_dir(r / "metrics.jsonl"),
                                  "readable"),
    "metrics.jsonl a FIFO": (lambda r, o: _fifo(r / "metrics.jsonl"), "readable"),
    "layers.jsonl a FIFO": (lambda r, o: _fifo(r / "layers.jsonl"), "readable"),
    "steps.jsonl a FIFO": (lambda r, o: _fifo(r / "steps.jsonl"), "readable"),
    "metrics.jsonl a symlink out of the run folder": (
        lambda r, o: _symlink(r / "metrics.jsonl", o / "metrics.jsonl"), "readable"),
    "metrics line nested 3000 deep": (lambda r, o: _deep_metrics_line(r), "readable"),
    "metrics line with 10**400": (lambda r, o: _huge_number_metrics_line(r), "readable"),
    "trainer.log a FIFO": (lambda r, o: _fifo(r / "trainer.log"), "readable"),
    "trainer.log a symlink to a secret": (
        lambda r, o: _symlink(r / "trainer.log", o / "secret.txt"), "readable"),
    "trainer.log a symlink to /dev/zero": (lambda r, o: _symlink(r / "trainer.log", "/dev/zero"),
                                           "readable"),
    "trainer.log a character device": (lambda r, o: _zero_device(r / "trainer.log"),
                                       "readable"),
}


def build_hostile_dir(tmp: Path) -> tuple[Path, list[Path], dict[str, Path]]:
    """A runs directory with two good runs and one damaged run per named case."""
    runs = tmp / "runs"
    out = outside_dir(tmp)
    goods = [good_run(runs, "good-a"), good_run(runs, "good-b")]
    victims = {}
    for i, (case, (damage, _)) in enumerate(DAMAGES.items()):
        path = good_run(runs, f"victim-{i}")
        damage(path, out)
        victims[case] = path
    return runs, goods, victims


def release_fifos(root: Path) -> None:
    """Open every FIFO under root for writing once, so a reader stuck opening one (the bug
    these tests look for) is released rather than left blocked for the rest of the session."""
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            p = os.path.join(dirpath, name)
            try:
                if stat.S_ISFIFO(os.lstat(p).st_mode):
                    os.close(os.open(p, os.O_WRONLY | os.O_NONBLOCK))
            except OSError:
                pass


def _vm_size() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmSize:"):
                return int(line.split()[1]) * 1024
    return 0


def in_child(fn: Callable[[], Any], timeout: float = 10.0,
             extra_memory: int = 4 << 30) -> tuple[str, Any]:
    """Run fn() in a forked child under a deadline and an address-space cap of the parent's
    size plus `extra_memory`. Returns ("ok", value), ("raised", "Type: message"),
    ("hung", None) when the deadline passed (the child is killed), or ("died", signal)."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: never returns into pytest
        try:
            os.close(r)
            try:
                limit = _vm_size() + extra_memory
                resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
                data = pickle.dumps(("ok", fn()))
            except BaseException as e:  # noqa: BLE001 - reported to the parent
                data = pickle.dumps(("raised", f"{type(e).__name__}: {e}"[:2000]))
            view = memoryview(data)
            while view:
                view = view[os.write(w, view):]
        finally:
            os._exit(0)
    os.close(w)
    chunks: list[bytes] = []
    deadline = time.monotonic() + timeout
    try:
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
                return ("hung", None)
            ready, _, _ = select.select([r], [], [], left)
            if ready:
                b = os.read(r, 1 << 20)
                if not b:
                    break
                chunks.append(b)
    finally:
        os.close(r)
    _, status = os.waitpid(pid, 0)
    if not chunks:
        return ("died", os.WTERMSIG(status) if os.WIFSIGNALED(status) else status)
    return pickle.loads(b"".join(chunks))
