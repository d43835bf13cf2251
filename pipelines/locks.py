"""Who opens the DuckDB warehouse when: one run at a time, and readers never in a run's way.

A DuckDB file takes one writer or many readers, and a writer that meets a reader fails. So besides the run lock
(``run.lock``: a second run fails at once), a run holds ``readers.lock`` exclusively while it writes the warehouse,
waiting a moment for readers to finish, and ``status``, ``report``, ``check`` and ``export`` hold it shared while they
read: between the two a reader never makes a running load fail. During extraction, which is most of a run, the
warehouse is free to read. Both files live in dlt's working folder for the warehouse.
"""

from __future__ import annotations

import fcntl
import os
import re
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

RUN_LOCK = "run.lock"
READERS_LOCK = "readers.lock"
WAIT_SECONDS = 120.0  # a writer waits this long for readers (and a waiting reader for a writer), then goes ahead
POLL_SECONDS = 0.05
HOLDER = re.compile(r"^pid (\d+) since (\S+)$")


@contextmanager
def writing(folder: Path, wait_seconds: float = WAIT_SECONDS) -> Iterator[None]:
    """Hold the readers' lock exclusively while a run writes the warehouse (waiting for readers to finish)."""
    with held(folder, fcntl.LOCK_EX, wait_seconds):
        yield


@contextmanager
def reading(folder: Path, wait_seconds: float = WAIT_SECONDS) -> Iterator[bool]:
    """Hold the readers' lock shared while reading the warehouse; yields False when a run was still writing it after
    ``wait_seconds`` (0: do not wait), and the caller should then not open the file."""
    with held(folder, fcntl.LOCK_SH, wait_seconds) as got:
        yield got


@contextmanager
def held(folder: Path, mode: int, wait_seconds: float) -> Iterator[bool]:
    if not folder.is_dir():
        yield True  # no run ever worked on this warehouse from here
        return
    with open(folder / READERS_LOCK, "a+") as handle:
        deadline = time.monotonic() + wait_seconds
        while True:
            try:
                fcntl.flock(handle, mode | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    yield False
                    return
                time.sleep(POLL_SECONDS)
        try:
            yield True
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def running(folder: Path) -> dict[str, Any] | None:
    """The run that holds the warehouse now, as ``{"pid", "started_at"}``; None when no run is alive.

    Read from the run lock's text without taking the lock (trying it would make a run that starts meanwhile fail);
    a run clears the text when it ends, and one killed outright leaves a pid that is no longer alive.
    """
    try:
        text = (folder / RUN_LOCK).read_text(encoding="utf-8").strip()
    except OSError:
        return None
    match = HOLDER.match(text)
    if not match or not alive(int(match.group(1))):
        return None
    return {"pid": int(match.group(1)), "started_at": match.group(2)}


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True
