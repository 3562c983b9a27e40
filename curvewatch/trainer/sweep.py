"""Sweep settings: a grid (`--grid lr=1e-3,1e-2 --grid batch_size=32,128`) or a random search
(`--random N` over `--range lr=1e-4:1e-1:log`, plus any --grid axes drawn as choices).

A setting is a dict of option name -> value text, exactly what the CLI would take, so every
setting is checked by `config.validate` with the CLI's own messages before anything starts.
"""
from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import numpy as np

from .config import FIELDS
from .errors import ConfigError

#: Options a sweep cannot vary: the group decides them.
NOT_SWEPT = ("fold", "validation")
MAX_SETTINGS = 1000


@dataclass(frozen=True)
class Range:
    """A continuous axis of a random search: low..high, drawn uniformly or log-uniformly;
    integer options are rounded to whole numbers."""

    name: str
    low: float
    high: float
    log: bool = False
    integer: bool = False

    def draw(self, rng: np.random.Generator) -> str:
        if self.log:
            x = math.exp(rng.uniform(math.log(self.low), math.log(self.high)))
        else:
            x = rng.uniform(self.low, self.high)
        return str(int(round(x))) if self.integer else f"{x:.4g}"


def _option(name: str, spec: str, flag: str) -> str:
    key = name.strip().replace("-", "_")
    if key in NOT_SWEPT:
        raise ConfigError(f"{flag} {spec!r}: {key} is set by the group and cannot be swept")
    if key not in FIELDS:
        raise ConfigError(f"{flag} {spec!r}: unknown option {key!r}; known options are "
                          f"{', '.join(n for n in FIELDS if n not in NOT_SWEPT)}")
    return key


def parse_grid(spec: str) -> tuple[str, tuple[str, ...]]:
    """`name=v1,v2,...` (or `name=v1;v2` when values hold commas, e.g. hidden=128,64;256)."""
    name, eq, values = spec.partition("=")
    if not eq or not name.strip():
        raise ConfigError(f"--grid must be NAME=V1,V2,... (e.g. lr=1e-3,1e-2), got {spec!r}")
    key = _option(name, spec, "--grid")
    sep = ";" if ";" in values else ","
    vals = tuple(v.strip() for v in values.split(sep) if v.strip())
    if not vals:
        raise ConfigError(f"--grid {spec!r} gives no values")
    if len(set(vals)) != len(vals):
        raise ConfigError(f"--grid {spec!r} repeats a value")
    return key, vals


#: Type names (as written in TrainConfig) of the options a --range can vary.
_NUMERIC = {"float": False, "int": True, "int | None": True}


def parse_range(spec: str) -> Range:
    """`name=LOW:HIGH` or `name=LOW:HIGH:log` (log-uniform, LOW > 0)."""
    name, eq, rest = spec.partition("=")
    parts = rest.split(":")
    bad = f"--range must be NAME=LOW:HIGH or NAME=LOW:HIGH:log (e.g. lr=1e-4:1e-1:log), " \
          f"got {spec!r}"
    if not eq or len(parts) not in (2, 3):
        raise ConfigError(bad)
    key = _option(name, spec, "--range")
    scale = parts[2].strip().lower() if len(parts) == 3 else "lin"
    if scale not in ("lin", "log"):
        raise ConfigError(f"--range {spec!r}: scale must be lin or log, got {parts[2]!r}")
    try:
        low, high = float(parts[0]), float(parts[1])
    except ValueError:
        raise ConfigError(bad) from None
    if not (math.isfinite(low) and math.isfinite(high) and low < high):
        raise ConfigError(f"--range {spec!r}: needs finite LOW < HIGH, got {low:g} and "
                          f"{high:g}")
    if scale == "log" and low <= 0:
        raise ConfigError(f"--range {spec!r}: a log range needs LOW > 0, got {low:g}")
    kind = str(FIELDS[key].type)
    if kind not in _NUMERIC:
        raise ConfigError(f"--range {spec!r}: {key} is not a number; use --grid for it")
    return Range(key, low, high, log=scale == "log", integer=_NUMERIC[kind])


def grid_settings(grid: list[tuple[str, tuple[str, ...]]]) -> list[dict[str, str]]:
    """Every combination of the grid's values, first axis slowest."""
    names = [n for n, _ in grid]
    if len(set(names)) != len(names):
        dup = sorted({n for n in names if names.count(n) > 1})
        raise ConfigError(f"--grid gives {', '.join(dup)} more than once")
    combos = list(itertools.product(*(vals for _, vals in grid)))
    if len(combos) > MAX_SETTINGS:
        raise ConfigError(f"the grid has {len(combos)} settings; at most {MAX_SETTINGS}")
    return [dict(zip(names, c, strict=True)) for c in combos]


def refuse_repeats(names: list[str], flags: str) -> None:
    """ConfigError naming every setting that `flags` give more than once."""
    dup = sorted({x for x in names if names.count(x) > 1})
    if dup:
        raise ConfigError(f"{flags} give {', '.join(dup)} more than once")


def random_settings(n: int, ranges: list[Range], grid: list[tuple[str, tuple[str, ...]]],
                    seed: int) -> list[dict[str, str]]:
    """`n` settings drawn with numpy's generator seeded by `seed`: each range uniformly (or
    log-uniformly), each grid axis as a uniform choice."""
    if not 1 <= n <= MAX_SETTINGS:
        raise ConfigError(f"--random must be between 1 and {MAX_SETTINGS}, got {n}")
    names = [r.name for r in ranges] + [g for g, _ in grid]
    refuse_repeats(names, "--range/--grid")
    if not names:
        raise ConfigError("--random N needs at least one --range NAME=LOW:HIGH[:log] or "
                          "--grid NAME=V1,V2")
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        s = {r.name: r.draw(rng) for r in ranges}
        s.update({g: vals[int(rng.integers(len(vals)))] for g, vals in grid})
        out.append(s)
    return out


def settings_from_args(grid_specs: list[str], range_specs: list[str], random: int | None,
                       seed: int) -> list[dict[str, str]]:
    """The sweep's settings from the CLI's --grid, --range and --random values."""
    grid = [parse_grid(g) for g in grid_specs]
    ranges = [parse_range(r) for r in range_specs]
    if random is None:
        if ranges:
            raise ConfigError("--range needs --random N (how many settings to draw)")
        if not grid:
            raise ConfigError("a sweep needs --grid NAME=V1,V2 (a grid) or --random N with "
                              "--range NAME=LOW:HIGH[:log] (a random search)")
        return grid_settings(grid)
    return random_settings(random, ranges, grid, seed)


def describe(setting: dict[str, str]) -> str:
    return " ".join(f"{k}={v}" for k, v in setting.items())
