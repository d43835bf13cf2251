"""Compile the environment's bytecode once each time the environment changes, in the background.

A cron job starts a fresh process every time, often where Python may not write its bytecode cache
(``PYTHONDONTWRITEBYTECODE``, as many containers set), and would then compile dlt, pyarrow and DuckDB's Python in
memory on every start. uv's ``compile-bytecode`` setting compiles at install, but then every ``uv run`` re-checks
and prints "Bytecode compiled 7748 files" on stderr. So instead the first command after the environment changed (a
package added, removed or upgraded: the set of ``*.dist-info`` folders differs from the stamp) starts
``python -m compileall`` for site-packages in the background and goes on; later commands find the bytecode there.
Nothing is printed, and nothing happens where the environment cannot be written.
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


def compile_when_changed() -> None:
    """Start compiling site-packages in the background if it changed since the last time; never raises."""
    with suppress(OSError, ValueError):
        packages = Path(sysconfig.get_paths()["purelib"])
        stamp = Path(sys.prefix) / STAMP
        fingerprint = environment_fingerprint(packages)
        if stamp.is_file() and stamp.read_text(encoding="ascii") == fingerprint:
            return
        stamp.write_text(fingerprint, encoding="ascii")  # first: a second command meanwhile starts no second compile
        subprocess.Popen(
            [sys.executable, "-m", "compileall", "-q", "-j", "0", str(packages)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,  # not the command's child for signals: Ctrl-C on the command leaves it be
            env={**os.environ, "PYTHONDONTWRITEBYTECODE": ""},
        )


def environment_fingerprint(packages: Path) -> str:
    """A short hash of the installed distributions (their dist-info folders name each one's version)."""
    names = sorted(entry.name for entry in os.scandir(packages) if entry.name.endswith(".dist-info"))
    return hashlib.blake2b("\n".join(names).encode(), digest_size=8).hexdigest()
