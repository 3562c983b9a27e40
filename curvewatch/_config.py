"""Configuration values as JSON for run.json, shared by the framework integrations."""
from __future__ import annotations

from typing import Any, Mapping

_JSON = (str, int, float, bool, type(None))


def jsonable(value: Any) -> Any:
    """`value` as JSON: containers kept, 0-d numpy/torch numbers through `.item()`, any other
    object (a module, a dtype, a path) by its `str`."""
    if isinstance(value, _JSON):
        return value
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    item = getattr(value, "item", None)
    if callable(item) and getattr(value, "ndim", None) == 0:
        return item()
    return str(value)
