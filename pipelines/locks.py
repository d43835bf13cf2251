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
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

RUN_LOCK = "run.lock"
READERS_LOCK = "readers.lock"
WAIT_SECONDS = 120.0  # a writer waits this long for readers (and a waiting reader for a writer), then goes ahead
POLL_SECONDS = 0.05
HOLDER_TEXT_SECONDS = 1.0  # how long `status` waits for a new holder to write who it is
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

    A run is alive while its lock is held, which is asked of the kernel without taking the lock (trying it would make
    a run that starts meanwhile fail): ``/proc/locks`` lists the holder of every flock. A pid alone is not trusted:
    one killed outright leaves its pid in the lock's text, and the system may give that pid to another process.
    Where the kernel cannot be asked (no ``/proc/locks``), the pid's liveness is all there is.
    """
    path = folder / RUN_LOCK
    deadline = time.monotonic() + HOLDER_TEXT_SECONDS
    while True:
        try:
            text = path.read_text(encoding="utf-8").strip()
            inode = os.stat(path).st_ino
        except OSError:
            return None
        match = HOLDER.match(text)
        holders = flock_holders(inode)
        if holders is None:
            break
        if not holders:
            return None
        if match or time.monotonic() >= deadline:
            pid = int(match.group(1)) if match and int(match.group(1)) in holders else holders[0]
            return {"pid": pid, "started_at": match.group(2) if match else None}
        time.sleep(0.01)  # the holder has the lock and is writing its text (or clearing it as it ends): read again
    if not match or not alive(int(match.group(1))):
        return None
    return {"pid": int(match.group(1)), "started_at": match.group(2)}


def flock_holders(inode: int) -> list[int] | None:
    """The pids that hold a flock on the file with this inode, from /proc/locks; None where it cannot be read."""
    try:
        with open("/proc/locks", encoding="ascii") as locks:
            lines = locks.read().splitlines()
    except OSError:
        return None
    holders = []
    for line in lines:
        fields = line.split()
        # 1: FLOCK  ADVISORY  WRITE 1234 fd:01:5678 0 EOF   (a blocked waiter's line has "->" after the number)
        if len(fields) >= 6 and fields[1] == "FLOCK" and fields[2] != "->":
            with suppress(ValueError):
                if int(fields[5].rsplit(":", 1)[-1]) == inode:
                    holders.append(int(fields[4]))
    return holders


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True
