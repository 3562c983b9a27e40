"""What a call allocates, as the memory tests measure it."""

from __future__ import annotations

import tracemalloc
from typing import Callable, TypeVar

T = TypeVar("T")


def traced_peak(call: Callable[[], T]) -> tuple[T, int]:
    """call()'s result and the peak bytes Python's allocators held while it ran (tracemalloc:
    numpy's buffers included, memory-mapped files not)."""
    tracemalloc.start()
    try:
        result = call()
        return result, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
