"""A throwaway PostgreSQL server for the tests: a real server from the machine's PostgreSQL binaries."""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def find_bindir() -> Path:
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True)
    which = shutil.which("pg_ctl")
    if which:
        candidates.insert(0, str(Path(os.path.realpath(which)).parent))
    for candidate in candidates:
        if (Path(candidate) / "initdb").exists():
            return Path(candidate)
    raise RuntimeError("no PostgreSQL server binaries (initdb): `apt-get install postgresql` or run .ci/run")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def run_tool(prefix: list[str], *args: str) -> None:
    """Run a PostgreSQL tool; on failure, raise with its name and the last line it wrote."""
    finished = subprocess.run([*prefix, *args], capture_output=True, text=True)
    if finished.returncode:
        raise RuntimeError(f"{Path(args[0]).name} failed (exit {finished.returncode}): {last_line(finished)}")


def last_line(finished: subprocess.CompletedProcess[str]) -> str:
    """The tool's last line of stderr (or stdout), which names the cause: initdb and pg_ctl say it last."""
    lines = (finished.stderr or finished.stdout or "").strip().splitlines()
    return lines[-1].strip() if lines else "no output"


@contextmanager
def postgres_server() -> Iterator[str]:
    """Start a PostgreSQL cluster on 127.0.0.1 in a temporary folder; yields its connection URL."""
    existing = os.environ.get("COHERE_EVENTS_TEST_POSTGRES")
    if existing:
        yield existing
        return
    bindir = find_bindir()
    root = Path(tempfile.mkdtemp(prefix="cohere-events-pg-"))
    data = root / "data"
    port = free_port()
    as_postgres: list[str] = []
    if os.geteuid() == 0:  # initdb refuses to run as root
        shutil.chown(root, "postgres")
        as_postgres = ["runuser", "-u", "postgres", "--"]
    run = lambda *args: run_tool(as_postgres, *args)  # noqa: E731
    run(str(bindir / "initdb"), "-D", str(data), "-U", "postgres", "--auth=trust", "-E", "UTF8")
    run(
        str(bindir / "pg_ctl"),
        "-D",
        str(data),
        "-w",
        "-l",
        str(root / "log"),
        "-o",
        f"-p {port} -h 127.0.0.1 -k {root} -c fsync=off -c full_page_writes=off",
        "start",
    )
    try:
        run(str(bindir / "createdb"), "-h", "127.0.0.1", "-p", str(port), "-U", "postgres", "cohere")
        yield f"postgresql://postgres:unused@127.0.0.1:{port}/cohere"
    finally:
        subprocess.run(
            [*as_postgres, str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"],
            capture_output=True,
        )
        shutil.rmtree(root, ignore_errors=True)
