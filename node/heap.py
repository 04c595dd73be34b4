"""Returning the C heap's free pages to the operating system.

A node's C allocations (LevelDB's write buffers and block cache, byte
strings larger than Python's small-object allocator handles, libp2p's
buffers) come from glibc's heap. glibc gives pages back to the kernel only
from the top of the heap, so memory freed in the middle stays resident: on
the 18-node bench at 336 tx/s a node's free heap grew from 3 to 10 MB in its
first ten minutes while the memory in use stayed at 29-32 MB, and that free
memory was most of the node's resident growth. ``malloc_trim(0)`` hands
every free whole page back (``madvise``), so resident memory follows the
memory in use. Where glibc is not the C library the trim is unavailable and
is skipped.
"""

from __future__ import annotations

import ctypes
import ctypes.util
from collections.abc import Callable

# How often a node trims: a trim of a 40 MB heap takes well under a
# millisecond of CPU, and a minute bounds what a node keeps above its use.
TRIM_INTERVAL_S = 60.0


def _load_trim() -> Callable[[int], int] | None:
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    try:
        libc = ctypes.CDLL(name)
        trim = libc.malloc_trim
    except (OSError, AttributeError):
        return None
    trim.argtypes = [ctypes.c_size_t]
    trim.restype = ctypes.c_int
    return trim


_TRIM = _load_trim()


def is_trim_available() -> bool:
    """Return True iff the C library can return free heap pages (glibc)."""
    return _TRIM is not None


def process_trim_heap() -> bool:
    """Return free heap pages to the operating system; True iff any were returned.

    Changes no allocation: only pages that hold no live memory are released.
    Without glibc it does nothing and returns False.
    """
    if _TRIM is None:
        return False
    return bool(_TRIM(0))
