"""Checkpoint files of a run: written atomically, loaded with weights_only=True."""
from __future__ import annotations

import io
from pathlib import Path
from typing import Any

from . import paths as P
from .jsonio import atomic_write_bytes

BEST = "best.pt"
LAST = "last.pt"


def checkpoint_path(run_dir: str | Path, name: str) -> Path:
    if name not in (BEST, LAST):
        raise ValueError(f"checkpoint name must be {BEST!r} or {LAST!r}, got {name!r}")
    return Path(run_dir) / P.CHECKPOINTS / name


def save_checkpoint(run_dir: str | Path, name: str, state: dict[str, Any], *,
                    durable: bool = True) -> Path:
    """Serialise `state` with torch.save and atomically replace checkpoints/<name>."""
    import torch

    path = checkpoint_path(run_dir, name)
    path.parent.mkdir(exist_ok=True)
    buf = io.BytesIO()
    torch.save(state, buf)
    atomic_write_bytes(path, buf.getvalue(), durable=durable)
    return path


def load_checkpoint(run_dir: str | Path, name: str, map_location: Any = "cpu") -> dict[str, Any]:
    """Load checkpoints/<name> with weights_only=True: tensors and plain containers only,
    never arbitrary pickled code."""
    import torch

    state: dict[str, Any] = torch.load(checkpoint_path(run_dir, name),
                                       map_location=map_location, weights_only=True)
    return state
