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
import json, os, sys, traceback
import curvewatch.diagnosis, pandas, sklearn.datasets
import sklearn.model_selection, sklearn.preprocessing
import torch, torch._dynamo  # what building an optimizer imports
import curvewatch.trainer.runner
from curvewatch.trainer.cli import main


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
    try:  # as `python -m trainer` ends: sys.exit(main())
        code = main(req["argv"])
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
