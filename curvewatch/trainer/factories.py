"""Importing user factories given as 'module:function'."""
from __future__ import annotations

import importlib
import sys
from typing import Any, Callable

from .errors import ConfigError


def import_factory(spec: str, what: str) -> Callable[..., Any]:
    """Import `module:function`, raising ConfigError that names the spec and the failure."""
    module_name, _, func_name = spec.partition(":")
    if "" not in sys.path and "." not in sys.path:
        sys.path.insert(0, "")  # a factory next to the user's working directory, as python -m does
    try:
        module = importlib.import_module(module_name)
    except Exception as e:
        raise ConfigError(f"{what} factory {spec!r} cannot be imported: module {module_name!r} "
                          f"failed with {type(e).__name__}: {e}") from None
    func = getattr(module, func_name, None)
    if not callable(func):
        raise ConfigError(f"{what} factory {spec!r} cannot be imported: module {module_name!r} "
                          f"has no callable {func_name!r}")
    return func
