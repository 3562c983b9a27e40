"""Trainer processes without the start-up cost, for a suite that starts hundreds of them.

A `TrainerForks` server is one Python process that imports torch, scikit-learn, pandas and
the trainer once (about 3 s of CPU a process otherwise) and then forks a child for each
command. Each child is a real, separate process that runs the trainer's command line (the
same `trainer.cli.main` that `python -m trainer` runs, exit status included) in its own
working directory and environment, with its output in files; it can be traced by strace or
killed with SIGKILL like any other. It waits at a gate until released, so that a tracer can
attach before its first system call of the run. Nothing has run in the server before a
fork, so every child starts from the state a fresh `python -m trainer` has after its imports,
but for one torch thread where the command does not set `--threads` (see `child`).

The trainer's own subprocesses are forked the same way: a child's `subprocess.Popen` of
`python -m curvewatch.trainer ARGS` (a detached run's worker, a group's runner and members,
the demo's launches) forks the child instead of starting an interpreter that would import
torch again (3-5 s of CPU each; test_groups.py alone started 23). The forked process gets
what the Popen asked for (its stdin/stdout/stderr, a new session, cwd, environment, no other
inherited descriptor, default SIGTERM/SIGINT handlers, sys.argv as `python -m` sets it) and
runs the same `main`; its torch thread count is its parent's, as in `child`. Any other
command, or one with options this does not mimic (shell, preexec_fn, user), starts as usual.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent

SERVER = r"""
import importlib.util, io, json, os, signal, subprocess, sys, traceback
import curvewatch.diagnosis, pandas, sklearn.datasets
import sklearn.model_selection, sklearn.preprocessing
import torch, torch._dynamo  # what building an optimizer imports
import curvewatch.trainer.runner
from curvewatch.trainer.cli import main

TRAINER = [sys.executable, "-m", "curvewatch.trainer"]
TRAINER_MAIN = importlib.util.find_spec("curvewatch.trainer.__main__").origin


def run_main(argv):
    # as `python -m trainer` ends: sys.exit(main()); never returns
    try:
        code = main(argv)
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else 0 if e.code is None else 1
        if not isinstance(e.code, int) and e.code is not None:
            print(e.code, file=sys.stderr)
    except BaseException:
        traceback.print_exc()
        code = 1
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def child(req, gate):
    for fd, path in ((1, req["stdout"]), (2, req["stderr"])):
        os.dup2(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644), fd)
    os.read(gate, 1)
    os.chdir(req["cwd"])
    os.environ.clear()
    os.environ.update(req["env"])
    # One torch thread unless the command asks (--threads): the suite runs two test workers
    # on two cores, where a training's default thread a core stalls on the other's (an
    # epoch of 0.03 s took 2 s at load 11). The only way a child differs from a fresh start.
    torch.set_num_threads(1)
    run_main(req["argv"])


def member(argv, cwd, env, stdio, pass_fds, new_session):
    # In the forked process: what exec'ing `python -m curvewatch.trainer ARGV` would set up.
    if new_session:
        os.setsid()
    for fd, target in enumerate(stdio):
        if target != -1:
            os.dup2(target, fd)
    # Every other inherited descriptor (a run's lock, a pipe's end) now refers to /dev/null,
    # as close_fds would drop it, yet keeps its number: a Python object of the parent still
    # holding that number may close it later without closing a file this process opened.
    blank = os.open(os.devnull, os.O_RDWR)
    for fd in map(int, os.listdir("/proc/self/fd")):
        if fd > 2 and fd != blank and fd not in pass_fds:
            try:
                os.dup2(blank, fd)
            except OSError:
                pass
    if cwd is not None:
        os.chdir(cwd)
    if env is not None:
        os.environ.clear()
        os.environ.update({os.fsdecode(k): os.fsdecode(v) for k, v in env.items()})
    signal.signal(signal.SIGTERM, signal.SIG_DFL)  # a fresh interpreter's handlers
    signal.signal(signal.SIGINT, signal.default_int_handler)
    unbuffered = bool(os.environ.get("PYTHONUNBUFFERED"))
    sys.stdout = io.TextIOWrapper(io.FileIO(1, "w", closefd=False), write_through=unbuffered)
    sys.stderr = io.TextIOWrapper(io.FileIO(2, "w", closefd=False), write_through=True,
                                  errors="backslashreplace")
    sys.argv = [TRAINER_MAIN, *argv]
    run_main(argv)


_spawn = subprocess.Popen._execute_child


def execute_child(self, args, executable, preexec_fn, close_fds, pass_fds, cwd, env,
                  startupinfo, creationflags, shell, p2cread, p2cwrite, c2pread, c2pwrite,
                  errread, errwrite, restore_signals, gid, gids, uid, umask,
                  start_new_session, process_group):
    # The trainer's own subprocesses (detached workers, group members and runners, demo
    # launches) fork from this pre-imported process instead of exec'ing a new interpreter.
    argv = [os.fspath(a) for a in args] if isinstance(args, (list, tuple)) else None
    plain = (not shell and preexec_fn is None and executable is None and gid is None
             and gids is None and uid is None and umask < 0 and process_group == -1)
    if not plain or argv is None or argv[:3] != TRAINER:
        return _spawn(self, args, executable, preexec_fn, close_fds, pass_fds, cwd, env,
                      startupinfo, creationflags, shell, p2cread, p2cwrite, c2pread,
                      c2pwrite, errread, errwrite, restore_signals, gid, gids, uid, umask,
                      start_new_session, process_group)
    sys.stdout.flush()  # else the child would write the parent's pending output again
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:
        try:
            member(argv[3:], cwd, env, (p2cread, c2pwrite, errwrite), pass_fds,
                   start_new_session)
        except BaseException:
            traceback.print_exc()
            os._exit(1)
    self.pid = pid
    self._child_created = True
    self._close_pipe_fds(p2cread, p2cwrite, c2pread, c2pwrite, errread, errwrite)


subprocess.Popen._execute_child = execute_child


gates = {}
reply = lambda **kw: print(json.dumps(kw), flush=True)
reply(ready=True)
for line in sys.stdin:
    req = json.loads(line)
    if req["cmd"] == "fork":
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:
            os.close(w)
            child(req, r)
        os.close(r)
        gates[pid] = w
        reply(pid=pid)
    elif req["cmd"] == "go":
        w = gates.pop(req["pid"])
        os.write(w, b"g")
        os.close(w)
        reply(ok=True)
    elif req["cmd"] == "wait":
        _, status = os.waitpid(req["pid"], 0)
        reply(code=os.waitstatus_to_exitcode(status))
    elif req["cmd"] == "poll":
        pid, status = os.waitpid(req["pid"], os.WNOHANG)
        reply(code=os.waitstatus_to_exitcode(status) if pid else None)
"""


class TrainerForks:
    """Fork trainer command lines from one pre-imported process (see the module docstring).
    Requests are serialised by a lock, so threads may share a server (each waits its turn)."""

    def __init__(self, log_dir: Path):
        self.log_dir = log_dir
        log_dir.mkdir(parents=True, exist_ok=True)
        self.outputs: dict[int, tuple[Path, Path]] = {}  # child pid -> its stdout, stderr
        self.lock = threading.Lock()
        self.proc = subprocess.Popen([sys.executable, "-c", SERVER], cwd=ROOT,
                                     env={**os.environ, "PYTHONPATH": str(ROOT)},
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     text=True)
        assert self._read().get("ready"), "the fork server did not start"

    def _read(self) -> dict[str, Any]:
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"the fork server exited with {self.proc.wait()}")
        return json.loads(line)

    def _ask(self, **request: Any) -> dict[str, Any]:
        with self.lock:
            self.proc.stdin.write(json.dumps(request) + "\n")
            self.proc.stdin.flush()
            return self._read()

    def fork(self, *argv: str, env: dict[str, str] | None = None,
             cwd: Path | None = None) -> int:
        """A child that will run `trainer ARGV` once released with `go`; returns its pid.
        Its environment is this process's, updated with `env`."""
        n = len(self.outputs)
        out, err = self.log_dir / f"fork-{n}.out", self.log_dir / f"fork-{n}.err"
        pid = int(self._ask(cmd="fork", argv=list(argv), env={**os.environ, **(env or {})},
                            cwd=str(cwd or ROOT), stdout=str(out), stderr=str(err))["pid"])
        self.outputs[pid] = (out, err)
        return pid

    def go(self, pid: int) -> None:
        self._ask(cmd="go", pid=pid)

    def wait(self, pid: int, timeout: float | None = None) -> int:
        """The child's exit status: its exit code, or -N if signal N ended it. After
        `timeout` seconds the child is killed and TimeoutExpired raised."""
        expired = threading.Event()

        def expire() -> None:
            expired.set()
            os.kill(pid, signal.SIGKILL)
        timer = threading.Timer(timeout, expire) if timeout else None
        if timer:
            timer.start()
        try:
            code = int(self._ask(cmd="wait", pid=pid)["code"])
        finally:
            if timer:
                timer.cancel()
        if expired.is_set():
            raise subprocess.TimeoutExpired(["trainer", str(pid)], timeout or 0)
        return code

    def poll(self, pid: int) -> int | None:
        """The child's exit status once it has ended (reaped then: ask once), else None."""
        code = self._ask(cmd="poll", pid=pid)["code"]
        return None if code is None else int(code)

    def output(self, pid: int) -> tuple[str, str]:
        """What the child `pid` wrote to stdout and stderr."""
        return tuple(p.read_text(errors="replace") if p.exists() else ""  # type: ignore
                     for p in self.outputs[pid])

    def run(self, *argv: str, env: dict[str, str] | None = None, cwd: Path | None = None,
            timeout: float | None = None) -> subprocess.CompletedProcess:
        """Run `trainer ARGV` in a child to its end, as subprocess.run would."""
        pid = self.fork(*argv, env=env, cwd=cwd)
        self.go(pid)
        code = self.wait(pid, timeout)
        out, err = self.output(pid)
        return subprocess.CompletedProcess(["python", "-m", "curvewatch.trainer", *argv], code,
                                           out, err)

    def close(self) -> None:
        self.proc.stdin.close()
        self.proc.wait(timeout=30)

    def __enter__(self) -> TrainerForks:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
