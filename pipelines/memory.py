"""How a run manages memory: the C library's free pages go back to the system (glibc; elsewhere a no-op), and
Python's cycle collector leaves the imported modules alone.

glibc's malloc keeps freed memory in its heaps for reuse and gives back only what is at the top of a heap. A first
run over 20,000 models holds 30-35 MB more of malloc'd memory while it extracts (pages in flight, the model list,
dlt's writers) than before; when extraction ends that is freed, but about 40 MB stayed resident in the heaps, free.
The load that follows allocates with DuckDB's own allocator (jemalloc), which cannot reuse glibc's free pages, so the
run's peak was the load's memory on top of that. ``malloc_trim(0)`` returns the free pages from the middle of every
heap as well; it takes about a millisecond. Called between phases, not during extraction: sampled every 2 s there,
it found at most 4 MB to return (the memory was in use).

glibc also raises its mmap threshold (from 128 KiB up to 32 MiB) each time a large block given its own mapping is
freed, after which blocks of that size come from the heaps and stay there once freed: Arrow batches of 20,000 rows
(about 1 MB) did that. :func:`fix_mmap_threshold` pins the threshold at its default, so large blocks keep their own
mappings and go back to the system when freed: extraction peaked at 239 instead of 247-262 MB.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import cache
from pathlib import Path

M_MMAP_THRESHOLD = -3  # mallopt's parameter, from glibc's malloc.h
MMAP_THRESHOLD_BYTES = 128 * 1024  # glibc's default, which it would otherwise raise as large blocks are freed


@cache
def _libc_function(name: str) -> Callable[..., int] | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        return getattr(libc, name)  # type: ignore[no-any-return]  # glibc only: musl and others have neither
    except (OSError, AttributeError):
        return None


def fix_mmap_threshold() -> bool:
    """Pin glibc's mmap threshold (MALLOC_MMAP_THRESHOLD_ wins if set); False where that cannot be done."""
    mallopt = _libc_function("mallopt")
    if mallopt is None or os.environ.get("MALLOC_MMAP_THRESHOLD_"):
        return False
    return bool(mallopt(ctypes.c_int(M_MMAP_THRESHOLD), ctypes.c_int(MMAP_THRESHOLD_BYTES)))


def release_free_memory() -> bool:
    """Return the C library's free heap pages to the operating system; False where that cannot be done."""
    trim = _libc_function("malloc_trim")
    if trim is None:
        return False
    trim(ctypes.c_size_t(0))
    return True


@contextmanager
def imports_out_of_gc() -> Iterator[None]:
    """Python's cycle collector, kept off the imported modules for the length of a run.

    A run allocates a dict per event and a list per page, so the collector runs hundreds of times, and each of its
    full passes went over the 120,000 objects of the imported modules (dlt, pyarrow, DuckDB, httpx): 0.3 s of GC over
    270k events. Those objects live as long as the process, so they are frozen out of the passes: 0.2 s. (Collecting
    the young generation less often saved 0.05 s more, but held on to 10 MB of cyclic garbage at 20,000 models.)
    """
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


CGROUP_ROOT = Path("/sys/fs/cgroup")
NO_LIMIT = 1 << 60  # cgroup v1 writes "no limit" as a page-rounded 2**63 - 1


def cgroup_room_bytes(root: Path = CGROUP_ROOT, membership: Path = Path("/proc/self/cgroup")) -> int | None:
    """How much more memory this process's cgroups let it use: the least of (limit - usage) over its memory cgroup
    and every parent, cgroup v2 (``memory.max``, ``memory.current``) or v1 (``memory.limit_in_bytes``,
    ``memory.usage_in_bytes``); None when no limit applies or none can be read (not Linux, no cgroup mount)."""
    try:
        lines = membership.read_text(encoding="ascii").splitlines()
    except OSError:
        return None
    rooms = []
    for line in lines:
        hierarchy, controllers, path = [*line.split(":", 2), "", ""][:3]
        relative = Path(path.lstrip("/"))
        if hierarchy == "0" and controllers == "":
            for mount in (root, root / "unified"):
                rooms += cgroup_rooms(mount, relative, "memory.max", "memory.current")
        elif "memory" in controllers.split(","):
            rooms += cgroup_rooms(root / "memory", relative, "memory.limit_in_bytes", "memory.usage_in_bytes")
    return min(rooms) if rooms else None


def cgroup_rooms(mount: Path, relative: Path, limit_file: str, usage_file: str) -> list[int]:
    """limit - usage of the cgroup at ``mount / relative`` and of each of its parents up to ``mount``."""
    rooms = []
    folder = mount / relative
    while True:
        try:
            limit_text = (folder / limit_file).read_text(encoding="ascii").strip()
            usage = int((folder / usage_file).read_text(encoding="ascii").strip())
            if limit_text != "max" and int(limit_text) < NO_LIMIT:
                rooms.append(max(0, int(limit_text) - usage))
        except (OSError, ValueError):
            pass
        if folder == mount or folder == folder.parent:
            return rooms
        folder = folder.parent
