"""Compile the environment's bytecode once each time the environment changes, in the background.

A cron job starts a fresh process every time, often where Python may not write its bytecode cache
(``PYTHONDONTWRITEBYTECODE``, as many containers set), and would then compile dlt, pyarrow and DuckDB's Python in
memory on every start. uv's ``compile-bytecode`` setting compiles at install, but then every ``uv run`` re-checks
and prints "Bytecode compiled 7748 files" on stderr. So instead the first command after the environment changed (a
package added, removed or upgraded: the set of ``*.dist-info`` folders differs from the stamp) starts
a compile of site-packages in the background and goes on; later commands find the bytecode there. The stamp is
written only once the compile has finished well, so a compile that was killed (systemd ends a oneshot unit's
leftovers) is started again by the next command; one compile at a time holds ``.cohere-events-bytecode.lock``.
It compiles with one worker, so that a cron run keeps the machine's other cores. Nothing is printed, and nothing
happens where the environment cannot be written.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import sysconfig
from contextlib import suppress
from pathlib import Path

STAMP = ".cohere-events-bytecode"
# The background compile: take the lock (or leave: one is under way), compile, and stamp only on success.
COMPILE = """
import compileall, fcntl, sys
packages, stamp, fingerprint = sys.argv[1:4]
lock = open(stamp + ".lock", "a")
try:
    fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
except OSError:
    sys.exit(0)
if compileall.compile_dir(packages, quiet=2, workers=1):
    with open(stamp + ".tmp", "w", encoding="ascii") as out:
        out.write(fingerprint)
    import os
    os.replace(stamp + ".tmp", stamp)
"""


def compile_when_changed(packages: Path | None = None, stamp: Path | None = None) -> subprocess.Popen[bytes] | None:
    """Start compiling site-packages (or ``packages``) in the background if it changed since the last time; returns
    the compile's process, if one was started. Never raises."""
    with suppress(OSError, ValueError):
        packages = packages or Path(sysconfig.get_paths()["purelib"])
        stamp = stamp or Path(sys.prefix) / STAMP
        fingerprint = environment_fingerprint(packages)
        if stamp.is_file() and stamp.read_text(encoding="ascii") == fingerprint:
            return None
        if compiling(stamp):
            return None
        return subprocess.Popen(
            [sys.executable, "-c", COMPILE, str(packages), str(stamp), fingerprint],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,  # not the command's child for signals: Ctrl-C on the command leaves it be
            env={**os.environ, "PYTHONDONTWRITEBYTECODE": ""},
        )
    return None


def compiling(stamp: Path) -> bool:
    """Whether a background compile holds the lock now (it is released when that process ends, however)."""
    import fcntl

    with open(f"{stamp}.lock", "a") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            return True
        fcntl.flock(lock, fcntl.LOCK_UN)
    return False


def environment_fingerprint(packages: Path) -> str:
    """A short hash of the installed distributions (their dist-info folders name each one's version)."""
    names = sorted(entry.name for entry in os.scandir(packages) if entry.name.endswith(".dist-info"))
    return hashlib.blake2b("\n".join(names).encode(), digest_size=8).hexdigest()
