"""The trainer's usage error and how its messages quote a value.

Every module that rejects input (options, config files, data, models, splits, sweeps) raises
ConfigError; the CLI prints its message and exits 2, the dashboard's Launch form shows it.
"""
from __future__ import annotations

from typing import Any


class ConfigError(ValueError):
    """A configuration value that is not accepted; the message names it and what is."""


def shown(value: Any, limit: int = 60) -> str:
    """repr(value) cut to `limit` characters, so an error quotes a huge input, not echoes it."""
    text = repr(value)
    return text if len(text) <= limit else f"{text[:limit - 14]}...({len(text)} chars)"
