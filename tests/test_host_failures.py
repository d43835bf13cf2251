"""What the host does to a cron job: full disks, read-only folders, refused writes and signals.

Each failure ends on one line on stderr with the contract's exit status, and the next run loads exactly what the
API holds. The filesystems are real: small tmpfs mounts (the tests run as root, here and in CI).
"""

from __future__ import annotations

import ctypes
import glob
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from dlt.common.storages.file_storage import FileStorage

from pipelines.providers.cohere.simulator import DEFAULT_API_KEY, FakeApiServer, FakeCohereApi, World
from pipelines.runner import host_error, root_cause
from tests.support import NOW, cli, cli_process, expected_events, warehouse_events

MODELS = 300  # about 1,500 events: more than the small mounts below hold
INTERRUPTED = "nothing half-written was committed; the next run completes the load"


@contextmanager
def tmpfs(folder: Path, size: str) -> Iterator[Path]:
    """A real tmpfs of ``size`` mounted on ``folder``, unmounted afterwards whatever happens."""
    folder.mkdir(parents=True, exist_ok=True)
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)], check=False)
    if mounted.returncode != 0:
        pytest.fail(f"these tests need to mount a tmpfs (run as root, or in a container with CAP_SYS_ADMIN): {folder}")
    try:
        yield folder
    finally:
        if subprocess.run(["umount", str(folder)], check=False).returncode != 0:
            subprocess.run(["umount", "-l", str(folder)], check=False)


def remount(folder: Path, options: str) -> None:
    subprocess.run(["mount", "-o", f"remount,{options}", str(folder)], check=True)


@pytest.fixture
def api(workdir: Path) -> Iterator[FakeApiServer]:
    """The simulated API with enough models to fill the small mounts."""
    with FakeApiServer(FakeCohereApi(World(models=MODELS, seed=5, now=NOW))) as server:
        yield server


def run(server: FakeApiServer, cwd: Path, data_dir: Path, *args: str, **popen: object) -> tuple[int, str, str]:
    """``cohere-events run`` as its own process, as cron starts it."""
    env = {"CO_API_URL": server.url, "CO_API_KEY": DEFAULT_API_KEY, "DLT_DATA_DIR": str(data_dir)}
    process = cli_process("run", "--requests-per-minute", "0", *args, env=env, cwd=cwd, **popen)
    out, err = process.communicate(timeout=120)
    return process.returncode, out, err


def assert_exact(server: FakeApiServer, warehouse: Path) -> None:
    rows = warehouse_events(warehouse)
    assert len(rows) == len(set(rows)), "duplicate events"
    assert set(rows) == expected_events(server.api.world)


def one_line(err: str) -> str:
    lines = err.splitlines()
    assert len(lines) == 1, f"stderr should be one line, got {len(lines)}:\n{err[-3000:]}"
    return lines[0]


def test_a_full_warehouse_folder_fails_on_one_line_and_the_next_run_completes(
    api: FakeApiServer, workdir: Path
) -> None:
    with tmpfs(workdir / "warehouse", "256k") as folder:
        code, out, err = run(api, folder, workdir / "dlt", "--log-file", str(folder / "run.log"))
        assert code == 1, out + err
        assert one_line(err).startswith(f"error: no space left on device in {folder}: free some space;")
        remount(folder, "size=64m")
        code, out, err = run(api, folder, workdir / "dlt")
        assert code == 0, err
        assert_exact(api, folder / "cohere_events.duckdb")


def test_a_full_dlt_data_dir_fails_on_one_line_and_the_next_run_completes(api: FakeApiServer, workdir: Path) -> None:
    with tmpfs(workdir / "dlt-data", "128k") as folder:
        code, out, err = run(api, workdir, folder)
        assert code == 1, out + err
        line = one_line(err)
        assert line.startswith(f"error: no space left on device in {folder}/pipelines/cohere_events-duckdb-"), line
        remount(folder, "size=64m")
        code, out, err = run(api, workdir, folder)
        assert code == 0, err
    assert_exact(api, workdir / "cohere_events.duckdb")


def test_enospc_behind_dlts_cross_device_fallback_is_what_is_reported(workdir: Path) -> None:
    # dlt moves files from the system temp folder into its working folder: the rename fails with EXDEV, the copy it
    # falls back to with ENOSPC, raised with the EXDEV as its context.
    source = workdir / "job.sql"
    source.write_bytes(os.urandom(512 * 1024))
    with tmpfs(workdir / "full", "256k") as folder:
        with pytest.raises(OSError) as raised:
            FileStorage.move_atomic_to_file(str(source), str(folder / "job.sql"))
        assert isinstance(raised.value.__context__, OSError) and raised.value.__context__.errno == 18  # EXDEV
        cause = root_cause(raised.value)
        assert isinstance(cause, OSError) and cause.errno == 28  # ENOSPC
        problem = host_error(raised.value, "duckdb")
        assert problem is not None and f"no space left on device in {folder}" in str(problem)


def test_a_read_only_folder_fails_on_one_line_and_the_next_run_completes(api: FakeApiServer, workdir: Path) -> None:
    with tmpfs(workdir / "srv", "64m") as folder:
        assert run(api, folder, folder / "dlt")[0] == 0
        api.api.world.advance(3 * 86400)
        remount(folder, "ro")
        code, out, err = run(api, folder, folder / "dlt")
        assert code == 1, out + err
        line = one_line(err)
        assert line.startswith(f"error: {folder}") and "is on a read-only file system" in line, line
        remount(folder, "rw")
        code, out, err = run(api, folder, folder / "dlt")
        assert code == 0, err
        assert_exact(api, folder / "cohere_events.duckdb")


def without_root_override() -> None:
    """In the child: drop root's right to ignore file permissions (CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH)."""
    libc = ctypes.CDLL(None, use_errno=True)
    for capability in (1, 2):
        if libc.prctl(24, capability, 0, 0, 0) != 0:  # PR_CAPBSET_DROP
            raise OSError(ctypes.get_errno(), "prctl(PR_CAPBSET_DROP)")


def test_a_folder_without_write_permission_fails_on_one_line(api: FakeApiServer, workdir: Path) -> None:
    folder = workdir / "warehouse"
    folder.mkdir()
    folder.chmod(0o555)
    code, out, err = run(api, folder, workdir / "dlt", preexec_fn=without_root_override)
    assert code == 1, out + err
    line = one_line(err)
    assert line.startswith(f"error: permission denied writing in {folder}: "), line
    folder.chmod(0o755)
    code, out, err = run(api, folder, workdir / "dlt", preexec_fn=without_root_override)
    assert code == 0, err
    assert_exact(api, folder / "cohere_events.duckdb")


@pytest.mark.parametrize(
    ("signum", "status", "line"),
    [(signal.SIGTERM, 143, f"terminated: {INTERRUPTED}"), (signal.SIGINT, 130, f"interrupted: {INTERRUPTED}")],
)
def test_a_signal_during_extraction_ends_on_one_line_and_the_next_run_completes(
    workdir: Path, signum: int, status: int, line: str
) -> None:
    api = FakeCohereApi(World(models=120, seed=8, now=NOW), latency_ms=50)
    log = workdir / "run.log"
    with FakeApiServer(api) as server:
        # no head start: its requests come before extraction (tests/test_headstart.py signals one)
        env = {"CO_API_URL": server.url, "CO_API_KEY": DEFAULT_API_KEY, "COHERE_EVENTS_HEAD_START": "0"}
        options = ("--requests-per-minute", "0", "--concurrency", "2")
        victim = cli_process("run", *options, "--log-file", str(log), env=env, cwd=workdir)
        deadline = time.monotonic() + 60
        while api.stats.requests <= 20 and victim.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert victim.poll() is None, "the run ended before it could be interrupted"
        victim.send_signal(signum)
        _, err = victim.communicate(timeout=60)
        assert victim.returncode == status, err
        assert err == line + "\n"
        assert log.read_text().endswith(f"exit={status} {line}\n")
        api.latency = 0
        api.world.advance(86400)
        result = cli("run", *options, env=env)  # the lock was released: not exit 4
    assert result.exit_code == 0, result.stderr
    assert_exact_world(api.world)


def assert_exact_world(world: World) -> None:
    rows = warehouse_events()
    assert len(rows) == len(set(rows)), "duplicate events"
    assert set(rows) == expected_events(world)


EXTRACT_THEN_DIE = """
import os, signal, sys
from pipelines.runner import make_pipeline
from pipelines.providers.cohere.source import cohere_finetuning
pipeline = make_pipeline()
pipeline.extract(cohere_finetuning(api_key=sys.argv[1], base_url=sys.argv[2], requests_per_minute=0))
pipeline.normalize()
os.kill(os.getpid(), signal.SIGKILL)
"""


def test_sigterm_during_the_load_step_ends_on_one_line_and_the_next_run_completes(workdir: Path) -> None:
    # A killed run leaves a normalized package; the next run loads it first, and is stopped once its jobs start.
    world = World(models=1000, seed=9, now=NOW)
    with FakeApiServer(FakeCohereApi(world)) as server:
        died = subprocess.run([sys.executable, "-c", EXTRACT_THEN_DIE, DEFAULT_API_KEY, server.url], check=False)
        assert died.returncode == -signal.SIGKILL
        jobs = str(workdir / ".dlt-data" / "pipelines" / "*" / "*" / "load" / "normalized" / "*" / "started_jobs" / "*")
        env = {"CO_API_URL": server.url, "CO_API_KEY": DEFAULT_API_KEY}
        victim = cli_process("run", "--requests-per-minute", "0", env=env, cwd=workdir)
        deadline = time.monotonic() + 60
        while not glob.glob(jobs) and victim.poll() is None and time.monotonic() < deadline:
            time.sleep(0.002)
        assert victim.poll() is None, "the run ended before its load step could be interrupted"
        victim.send_signal(signal.SIGTERM)
        _, err = victim.communicate(timeout=60)
        assert victim.returncode == 143, err
        assert err == f"terminated: {INTERRUPTED}\n"
        world.advance(86400)
        result = cli("run", "--requests-per-minute", "0", env=env)
    assert result.exit_code == 0, result.stderr
    assert "finished an interrupted earlier load first" in result.stdout
    assert_exact_world(world)
