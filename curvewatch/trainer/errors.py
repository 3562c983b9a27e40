"""The trainer's usage error and how its messages quote a value.

Every module that rejects input (options, config files, data, models, splits, sweeps) raises
ConfigError; the CLI prints its message and exits 2, the dashboard's Launch form shows it.
"""
from __future__ import annotations

import difflib
from typing import Any, Iterable


class ConfigError(ValueError):
    """A configuration value that is not accepted; the message names it and what is."""


def shown(value: Any, limit: int = 60) -> str:
    """repr(value) cut to `limit` characters, so an error quotes a huge input, not echoes it."""
    text = repr(value)
    return text if len(text) <= limit else f"{text[:limit - 14]}...({len(text)} chars)"


def did_you_mean(value: Any, choices: Iterable[str]) -> str:
    """`; did you mean 'X'?` with the choice nearest to a misspelt `value` (difflib), or ''
    when none is near: the end of a message that names the value and the accepted ones."""
    if not isinstance(value, str) or not value.strip():
        return ""
    near = difflib.get_close_matches(value.strip(), list(choices), n=1)
    return f"; did you mean {near[0]!r}?" if near else ""
