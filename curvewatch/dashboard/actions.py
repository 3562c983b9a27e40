"""Side effects of the pages, all through the trainer's CLI as a process (argument lists,
never a shell, never an import of the training loop): launch, stop, resume, demo; and delete, which
only removes a folder that tracking.run_path returned.
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

from curvewatch import tracking
from curvewatch.commands import SHELL_TRAINER, TRAINER_MODULE

ROOT = Path(__file__).resolve().parents[2]  # the folder that holds curvewatch/
STARTED_RE = re.compile(r"^started (\S+) \(pid (\d+)\)")
CLI_TIMEOUT = 120.0


@dataclass(frozen=True)
class CliResult:
    ok: bool
    run_id: str | None
    stdout: str
    stderr: str
    returncode: int

    @property
    def message(self) -> str:
        """The CLI's one-line error (or the last stderr line), for an inline message."""
        lines = [ln for ln in self.stderr.strip().splitlines() if ln.strip()]
        return lines[-1] if lines else (self.stdout.strip().splitlines() or [""])[-1]


def _cli(args: Sequence[str], timeout: float = CLI_TIMEOUT) -> CliResult:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH", "")) if p)
    try:
        proc = subprocess.run([sys.executable, "-m", TRAINER_MODULE, *args], cwd=str(ROOT),
                              capture_output=True, text=True, timeout=timeout, env=env,
                              stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired as e:
        return CliResult(False, None, str(e.stdout or ""), f"timed out after {timeout:g}s", 124)
    except OSError as e:
        return CliResult(False, None, "", f"could not start the trainer: {e}", 127)
    m = next((STARTED_RE.match(ln) for ln in proc.stdout.splitlines()
              if STARTED_RE.match(ln)), None)
    return CliResult(proc.returncode == 0, m.group(1) if m else None, proc.stdout,
                     proc.stderr, proc.returncode)


def runs_arg(runs_dir: Path) -> str:
    """--runs-dir for the CLI: the bucket's URL when `runs_dir` is this machine's mirror of
    one (so a launch, resume or stop acts on the bucket, not on the local copy), else the
    folder's absolute path."""
    from curvewatch.tracking.object_store import MIRROR_MARK, remote_of

    root = remote_of(Path(runs_dir), MIRROR_MARK)
    return root.url if root is not None else str(Path(runs_dir).resolve())


def launch_run(runs_dir: Path, name: str, config: Mapping[str, Any],
               tags: Sequence[str] = (), group_options: Mapping[str, Any] | None = None
               ) -> CliResult:
    """Start the trainer with launch_args (`run --detach --runs-dir DIR --name NAME
    [options]`) as a process: `config` is the form's raw options (what
    `trainer.config.validate` takes), passed on as `trainer.config.to_args` spells them;
    group options (repeat, parallel) become `--repeat N --parallel K`. A group launch prints
    the group id. What the dashboard may not ask of the machine (dashboard/launch_policy.py:
    a csv: path outside the data folders, a factory not allowed, more members than cores)
    or what the CLI would reject is refused here, before any process starts."""
    from curvewatch.dashboard import launch_policy
    from curvewatch.trainer.config import to_args, validate
    from curvewatch.trainer.errors import ConfigError

    try:
        cfg = validate(launch_policy.apply(config, group_options))
    except launch_policy.Refused as e:
        return CliResult(False, None, "", f"refused by the dashboard: {e}", 2)
    except ConfigError as e:
        return CliResult(False, None, "", f"{SHELL_TRAINER} run: error: {e}", 2)
    return _cli(launch_args(runs_dir, name, to_args(cfg), tags, group_options))


def launch_args(runs_dir: Path, name: str, config_args: Sequence[str] = (),
                tags: Sequence[str] = (), group_options: Mapping[str, Any] | None = None
                ) -> list[str]:
    """The trainer's arguments for a launch (`config_args`: trainer.config.to_args of the
    validated options): what launch_run runs, and what the Launch page shows for a shell."""
    args = ["run", "--detach", "--runs-dir", runs_arg(runs_dir)]
    for k, v in (group_options or {}).items():
        args += [f"--{k}", str(v)]
    if name:
        args += ["--name", name]
    for t in tags:
        args += ["--tag", t]
    return args + list(config_args)


def stop_run(runs_dir: Path, run_id: str) -> CliResult:
    """`trainer stop RUN` (writes the STOP file: a graceful stop); a group id stops
    the group's members and starts no more."""
    tracking.run_path(runs_dir, run_id)  # refuse anything that is not a folder here
    return _cli(["stop", run_id, "--runs-dir", runs_arg(runs_dir)], timeout=60)


def resume(runs_dir: Path, run_id: str, epochs: int | None = None) -> CliResult:
    """`trainer resume RUN --detach [--epochs N]`: a stopped or crashed run goes on
    from last.pt; a group id resumes the group's stopped, crashed and never-started members
    (with `epochs`, its completed ones too, each up to that many epochs in all)."""
    tracking.run_path(runs_dir, run_id)  # refuse anything that is not a folder here
    more = ["--epochs", str(epochs)] if epochs is not None else []
    return _cli(["resume", run_id, "--detach", "--runs-dir", runs_arg(runs_dir), *more],
                timeout=60)


def start_demo(runs_dir: Path) -> CliResult:
    return _cli(["demo", "--runs-dir", runs_arg(runs_dir)])


def delete_run(runs_dir: Path, run_id: str) -> Path:
    """Remove one run folder. Only a folder returned by tracking.run_path, which rejects
    traversal and symlinks, is ever removed; a running run is refused."""
    from curvewatch.tracking.procinfo import lock_held

    path = tracking.run_path(runs_dir, run_id)
    info = tracking.read_run(path)
    if info.state == "running":
        raise RuntimeError(f"run {run_id} is still running; stop it before deleting it")
    if lock_held(path):  # the lock, not the displayed state, says whether it is live
        raise RuntimeError(f"run {run_id} shows {info.state.replace('_', ' ')} but a live "
                           "process still holds it (its lock is taken); stop it or wait for "
                           "it to end before deleting it")
    shutil.rmtree(path)
    return path
