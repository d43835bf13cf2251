"""Hand the memory the C library keeps after it was freed back to the operating system (glibc; elsewhere a no-op).

glibc's malloc keeps freed memory in its heaps for reuse and gives back only what is at the top of a heap. A first
run over 20,000 models holds 30-35 MB more of malloc'd memory while it extracts (pages in flight, the model list,
dlt's writers) than before; when extraction ends that is freed, but about 40 MB stayed resident in the heaps, free.
The load that follows allocates with DuckDB's own allocator (jemalloc), which cannot reuse glibc's free pages, so the
run's peak was the load's memory on top of that. ``malloc_trim(0)`` returns the free pages from the middle of every
heap as well; it takes about a millisecond. Called between phases, not during extraction: sampled every 2 s there,
it found at most 4 MB to return (the memory was in use).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys
from collections.abc import Callable
from functools import cache


@cache
def _malloc_trim() -> Callable[[int], int] | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        trim = libc.malloc_trim  # glibc only: musl and others have no such function
    except (OSError, AttributeError):
        return None
    trim.argtypes = [ctypes.c_size_t]
    trim.restype = ctypes.c_int
    return trim  # type: ignore[no-any-return]


def release_free_memory() -> bool:
    """Return the C library's free heap pages to the operating system; False where that cannot be done."""
    trim = _malloc_trim()
    if trim is None:
        return False
    trim(0)
    return True
