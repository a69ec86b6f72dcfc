"""Giving freed memory back to the operating system.

glibc's allocator keeps what a process freed for reuse, and after a large block is freed
it raises its mmap threshold, so the next large arrays come from the heap and stay there.
A long-running server that swaps a model (megabytes of arrays freed at once) then holds
that memory for good. ``trim`` asks the allocator to return free pages; elsewhere than
glibc it does nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys
from collections.abc import Callable

_malloc_trim: Callable[[int], int] | None = None
if sys.platform.startswith("linux"):
    try:
        _malloc_trim = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim
    except (OSError, AttributeError):  # musl and others have no malloc_trim
        _malloc_trim = None


def trim() -> bool:
    """Return free heap pages to the OS; True if the allocator could do it."""
    return _malloc_trim is not None and bool(_malloc_trim(0))
