"""What a Launch form may ask of this machine. Pure: no streamlit, no torch.

The dashboard can start processes, and whoever reaches its port uses it (it listens on
127.0.0.1 unless told otherwise, but a shared machine, a forwarded port or a browser
exploit reach it too). So the form is not a file reader or a code runner (docs/dashboard.md,
"What the Launch form may do"):

- `csv:PATH` only names a regular file with a `.csv` name, under a data folder: the working
  directory, or the folders in $CURVEWATCH_DATA_ROOT (os.pathsep-separated) when that is set.
  The path is resolved (symlinks included) before anything opens it; hidden files and folders
  (`.env`, `.git/...`), /proc, /sys and /dev are refused, and so is anything that is not a
  regular file (a FIFO, a device). The CLI then gets the resolved path.
- `module:function` factories (dataset or model) run code, so only those the user listed in
  $CURVEWATCH_ALLOW_FACTORY (comma-separated `module:function`, or `module:*`) are accepted.
- `--parallel`, `--repeat` and `--threads` are capped by the machine: parallel and threads by
  its cores (and parallel by its free memory, MEMBER_BYTES a member), repeat by MAX_REPEAT.

The CLI, run by the machine's owner, keeps its full powers.
"""
from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

DATA_ROOT_ENV = "CURVEWATCH_DATA_ROOT"
ALLOW_FACTORY_ENV = "CURVEWATCH_ALLOW_FACTORY"
CSV_SUFFIXES = (".csv", ".csv.gz", ".csv.bz2", ".csv.xz", ".csv.zst")
#: never data, whatever the data folders are
SYSTEM_TREES = ("/proc", "/sys", "/dev")
#: what one group member (a process with torch and its data) is counted as using
MEMBER_BYTES = 512 << 20
MAX_REPEAT = 100


class Refused(ValueError):
    """A form value the dashboard does not pass on to the trainer (the message says why)."""


def _quote(text: str, limit: int = 120) -> str:
    return repr(text if len(text) <= limit else text[: limit - 1] + "…")


def data_roots(env: Mapping[str, str] | None = None, cwd: str | None = None) -> list[Path]:
    """The folders a form's csv: path may lie in: $CURVEWATCH_DATA_ROOT's, else the working
    directory (resolved)."""
    env = os.environ if env is None else env
    raw = env.get(DATA_ROOT_ENV, "")
    roots = [r for r in raw.split(os.pathsep) if r.strip()] or [cwd or os.getcwd()]
    return [Path(os.path.realpath(r)) for r in roots]


def check_csv(given: str, roots: list[Path], cwd: str | None = None) -> Path:
    """The resolved path of a form's `csv:` path, or Refused saying why. Nothing is opened."""
    where = ", ".join(str(r) for r in roots)
    hint = (f"a form may only read .csv files in {where} (set {DATA_ROOT_ENV} to allow other "
            "folders; the CLI reads any file)")
    if not given or "\x00" in given:
        raise Refused(f"dataset csv:{_quote(given)} is not a usable path")
    real = Path(os.path.realpath(os.path.join(cwd or os.getcwd(), os.path.expanduser(given))))
    if any(str(real) == t or str(real).startswith(t + "/") for t in SYSTEM_TREES):
        raise Refused(f"dataset csv:{_quote(given)} is a system file, not data; {hint}")
    root = next((r for r in roots if real == r or r in real.parents), None)
    if root is None:
        raise Refused(f"dataset csv:{_quote(given)} is outside the data folders; {hint}")
    rel = real.relative_to(root).parts
    if any(p.startswith(".") for p in rel):
        raise Refused(f"dataset csv:{_quote(given)} is or lies in a hidden file or folder; "
                      f"{hint}")
    if not real.name.lower().endswith(CSV_SUFFIXES):
        raise Refused(f"dataset csv:{_quote(given)} does not end in .csv; {hint}")
    try:
        mode = os.stat(real).st_mode
    except FileNotFoundError:
        raise Refused(f"dataset csv:{_quote(given)}: no such file") from None
    except OSError as e:
        raise Refused(f"dataset csv:{_quote(given)} cannot be read: {e.strerror}") from None
    if not stat.S_ISREG(mode):
        raise Refused(f"dataset csv:{_quote(given)} is not a regular file")
    return real


def allowed_factories(env: Mapping[str, str] | None = None) -> frozenset[str]:
    env = os.environ if env is None else env
    return frozenset(s.strip() for s in env.get(ALLOW_FACTORY_ENV, "").split(",") if s.strip())


def check_factory(spec: str, what: str, allowed: frozenset[str]) -> None:
    module, _, _ = spec.partition(":")
    if spec in allowed or f"{module}:*" in allowed:
        return
    raise Refused(f"{what} factory {_quote(spec)} is not allowed from the dashboard: a factory "
                  f"runs code, so the form takes only those listed in {ALLOW_FACTORY_ENV} "
                  f"(comma-separated module:function or module:*, set where the dashboard "
                  f"starts){'; it lists ' + ', '.join(sorted(allowed)) if allowed else ''}")


def _available_memory() -> int | None:
    try:
        with open("/proc/meminfo", "rb") as f:
            for line in f:
                if line.startswith(b"MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


@dataclass(frozen=True)
class Limits:
    parallel: int
    repeat: int
    threads: int


def machine_limits() -> Limits:
    """Parallel members: at most the cores, and what free memory holds at MEMBER_BYTES each;
    threads: at most the cores; repeat: MAX_REPEAT."""
    cores = os.cpu_count() or 1
    mem = _available_memory()
    parallel = cores if mem is None else max(1, min(cores, mem // MEMBER_BYTES))
    return Limits(parallel=parallel, repeat=MAX_REPEAT, threads=cores)


def _count(name: str, value: Any, limit: int, why: str) -> None:
    try:
        n = int(str(value).strip())
    except ValueError:
        return  # not a number: the CLI's own validation says so
    if n > limit:
        raise Refused(f"--{name} {n} is more than this machine allows from the dashboard "
                      f"({limit}, {why})")


def apply(options: Mapping[str, Any], group_options: Mapping[str, Any] | None = None, *,
          env: Mapping[str, str] | None = None, cwd: str | None = None,
          limits: Limits | None = None) -> dict[str, Any]:
    """The form's CLI options as the dashboard passes them on: a `csv:` path replaced by its
    resolved path; raises Refused for a path, a factory or a count the form may not ask for."""
    out = dict(options)
    limits = limits or machine_limits()
    allowed = allowed_factories(env)
    dataset = str(out.get("dataset") or "").strip()
    if dataset.startswith("csv:"):
        out["dataset"] = "csv:" + str(check_csv(dataset[4:], data_roots(env, cwd), cwd))
    elif ":" in dataset:  # not a built-in name (none has a colon): module:function
        check_factory(dataset, "dataset", allowed)
    model = str(out.get("model") or "").strip()
    if ":" in model:
        check_factory(model, "model", allowed)
    cores = f"{os.cpu_count() or 1} cores"
    if out.get("threads") not in (None, ""):
        _count("threads", out["threads"], limits.threads, cores)
    for name, value in (group_options or {}).items():
        if name == "parallel":
            _count("parallel", value, limits.parallel,
                   f"{cores}, {MEMBER_BYTES >> 20} MiB of free memory a member")
        elif name == "repeat":
            _count("repeat", value, limits.repeat, "seeds a form may start at once")
    return out
