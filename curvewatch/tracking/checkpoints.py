"""Checkpoint files of a run: written atomically, loaded with weights_only=True."""
from __future__ import annotations

import io
import os
import warnings
from pathlib import Path
from typing import Any

from . import paths as P, safeio
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


class CheckpointError(ValueError):
    """A checkpoint file that cannot be loaded: the message is one line naming the file and
    the reason (never advice to load it without weights_only)."""


def load_checkpoint(run_dir: str | Path, name: str, map_location: Any = "cpu") -> dict[str, Any]:
    """Load checkpoints/<name> with weights_only=True: tensors and plain containers only,
    never arbitrary pickled code. The file must be a regular file, not a symlink, FIFO or
    device (tracking.safeio). Raises FileNotFoundError when it is absent and CheckpointError
    for anything else that is wrong with it (a pickle that weights_only refuses, garbage, a
    value that is not a dict)."""
    import torch

    path = checkpoint_path(run_dir, name)
    shown = f"{P.CHECKPOINTS}/{name}"
    try:
        fd = safeio.open_regular(path)
    except FileNotFoundError:
        raise
    except OSError as e:
        raise CheckpointError(f"{shown} cannot be read: {safeio.describe(e)}") from None
    with os.fdopen(fd, "rb") as f, warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch's notes on odd pickles: the error says enough
        try:
            state = torch.load(f, map_location=map_location, weights_only=True)
        except Exception as e:  # UnpicklingError, RuntimeError, EOFError, ...: all refused
            raise CheckpointError(f"{shown} is not a checkpoint that can be loaded safely "
                                  f"(weights only; {type(e).__name__})") from None
    if not isinstance(state, dict):
        raise CheckpointError(f"{shown} holds a {type(state).__name__}, not a checkpoint")
    return state
