"""Trainer processes without the start-up cost, for the crash tests that start dozens of them.

A `TrainerForks` server is one Python process that imports torch, scikit-learn, pandas and
the trainer once (about 3 s of CPU a process otherwise) and then forks a child for each
command. Each child is a real, separate process that runs the trainer's command line (the
same `trainer.cli.main` that `python -m trainer` runs) with its own environment, and can be
traced by strace or killed with SIGKILL like any other; it waits at a gate until released,
so a tracer can attach before its first system call of the run.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from conftest import ROOT

SERVER = r"""
import json, os, sys
import diagnosis, pandas, sklearn.datasets, sklearn.model_selection, sklearn.preprocessing
import torch._dynamo  # what building an optimizer imports
import trainer.runner
from trainer.cli import main

gates = {}
reply = lambda **kw: print(json.dumps(kw), flush=True)
reply(ready=True)
for line in sys.stdin:
    req = json.loads(line)
    if req["cmd"] == "fork":
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:  # the child: output to its log, then wait at the gate
            os.close(w)
            log = os.open(req["log"], os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
            os.dup2(log, 1)
            os.dup2(log, 2)
            os.read(r, 1)
            os.environ.update(req["env"])
            code = 1
            try:
                code = main(req["argv"])
            finally:
                sys.stdout.flush()
                sys.stderr.flush()
                os._exit(code)
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
"""


class TrainerForks:
    """Fork trainer command lines from one pre-imported process (see the module docstring).
    Not thread-safe: one server per thread."""

    def __init__(self, log_dir: Path):
        self.log_dir = log_dir
        log_dir.mkdir(parents=True, exist_ok=True)
        self.logs: dict[int, Path] = {}  # child pid -> its output
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
        self.proc.stdin.write(json.dumps(request) + "\n")
        self.proc.stdin.flush()
        return self._read()

    def fork(self, *argv: str, env: dict[str, str] | None = None) -> int:
        """A child that will run `trainer ARGV` once released with `go`; returns its pid."""
        log = self.log_dir / f"fork-{len(self.logs)}.log"
        pid = int(self._ask(cmd="fork", argv=list(argv), env=env or {}, log=str(log))["pid"])
        self.logs[pid] = log
        return pid

    def go(self, pid: int) -> None:
        self._ask(cmd="go", pid=pid)

    def wait(self, pid: int) -> int:
        """The child's exit status: its exit code, or -N if signal N ended it."""
        return int(self._ask(cmd="wait", pid=pid)["code"])

    def run(self, *argv: str, env: dict[str, str] | None = None) -> tuple[int, str]:
        """Run `trainer ARGV` in a child to its end; return its exit status and output."""
        pid = self.fork(*argv, env=env)
        self.go(pid)
        return self.wait(pid), self.output(pid)

    def output(self, pid: int) -> str:
        """What the child `pid` printed (stdout and stderr)."""
        log = self.logs[pid]
        return log.read_text(errors="replace") if log.exists() else ""

    def close(self) -> None:
        self.proc.stdin.close()
        self.proc.wait(timeout=30)

    def __enter__(self) -> TrainerForks:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
