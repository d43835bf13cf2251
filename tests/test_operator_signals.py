"""Operators' signals that never lie: one Prometheus file for every provider, a run refused by the lock is a skipped
run, the load's memory cap is bounded by the container's cgroup, `status` judges a live run by its lock, and
`check` tells "problems found" from "could not judge"."""

from __future__ import annotations

import fcntl
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest

from pipelines import config
from pipelines.memory import cgroup_room_bytes
from pipelines.providers.together.simulator import DEFAULT_API_KEY, FakeApiServer, FakeTogetherApi, World
from tests.support import NOW, Fake, cli
from tests.test_check import metrics


@pytest.fixture
def both(fake: Fake, monkeypatch: pytest.MonkeyPatch) -> Iterator[Fake]:
    """Cohere's simulated API (``fake``) and Together AI's beside it."""
    together = FakeTogetherApi(World(jobs=10, seed=5, now=NOW, spacing=timedelta(minutes=15)))
    with FakeApiServer(together) as server:
        monkeypatch.setenv("TOGETHER_BASE_URL", server.url)
        monkeypatch.setenv("TOGETHER_API_KEY", DEFAULT_API_KEY)
        yield fake


def series(path: Path, name: str) -> dict[str, float]:
    """provider -> value of one metric in a Prometheus file."""
    return {dict(labels)["provider"]: value for labels, value in metrics(path).get(name, {}).items()}


def test_one_prometheus_file_keeps_every_providers_series_and_counters_never_go_back(both: Fake, workdir: Path) -> None:
    path = workdir / "cohere-events.prom"
    assert cli("run", "--prometheus", str(path)).exit_code == 0
    requests = series(path, "cohere_events_requests_total")["cohere"]
    assert cli("run", "--provider", "together", "--prometheus", str(path)).exit_code == 0
    assert series(path, "cohere_events_requests_total")["cohere"] == requests  # kept, not dropped to 0
    assert set(series(path, "cohere_events_last_run_success")) == {"cohere", "together"}
    success = series(path, "cohere_events_last_success_timestamp_seconds")
    failed = cli("run", "--provider", "together", "--prometheus", str(path), env={"TOGETHER_API_KEY": "wrong"})
    assert failed.exit_code == 3
    after = series(path, "cohere_events_last_success_timestamp_seconds")
    assert after == success  # both providers' last success survive a failure
    assert series(path, "cohere_events_last_run_success") == {"cohere": 1, "together": 0}
    assert series(path, "cohere_events_requests_total")["together"] >= 1
    # check's series share the file with run's
    assert cli("check", "--provider", "together", "--prometheus", str(path)).exit_code == 0
    assert "cohere_events_last_run_success" in metrics(path) and "cohere_events_stale_models" in metrics(path)


def test_a_first_run_that_fails_writes_a_last_success_an_alert_can_see(fake: Fake, workdir: Path) -> None:
    path = workdir / "run.prom"
    assert cli("run", "--prometheus", str(path), env={"CO_API_KEY": "wrong"}).exit_code == 3
    assert series(path, "cohere_events_last_success_timestamp_seconds") == {"cohere": 0.0}  # not NaN: time() - 0


def test_a_run_refused_by_the_lock_is_a_skipped_run_not_a_failed_one(fake: Fake, workdir: Path) -> None:
    path = workdir / "run.prom"
    assert cli("run", "--prometheus", str(path)).exit_code == 0
    before = metrics(path)
    folder = config.pipelines_dir("duckdb")
    with open(folder / "run.lock", "a+") as held:
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)  # another run holds the warehouse
        assert cli("run", "--prometheus", str(path)).exit_code == 4
    after = metrics(path)
    assert series(path, "cohere_events_runs_skipped_total") == {"cohere": 1}
    for name in ("cohere_events_last_run_success", "cohere_events_events_loaded", "cohere_events_requests_total"):
        assert after[name] == before[name], name


def test_status_judges_a_live_run_by_its_lock_not_by_a_pid(fake: Fake, workdir: Path) -> None:
    assert cli("run").exit_code == 0
    lock = config.pipelines_dir("duckdb") / "run.lock"
    # a run killed outright leaves its pid, which the system gave to another process (here: this one)
    lock.write_text(f"pid {os.getpid()} since 2026-11-20T12:00:00Z")
    assert json.loads(cli("status", "--format", "json").stdout)["running"] is False
    holder = subprocess.Popen(
        [sys.executable, "-c", "import fcntl,sys,time; f=open(sys.argv[1],'a+'); fcntl.flock(f, fcntl.LOCK_EX); "
         "print('held', flush=True); time.sleep(30)", str(lock)],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        found = json.loads(cli("status", "--format", "json").stdout)
        assert found["running"] is True and found["run"]["pid"] == holder.pid
    finally:
        holder.kill()
        holder.wait()


def test_check_that_cannot_read_the_warehouse_says_so_with_its_own_exit_status(workdir: Path) -> None:
    Path("cohere_events.duckdb").write_bytes(b"not a database" * 1000)
    result = cli("check", "--max-age", "24")
    assert result.exit_code == 5
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith("error: could not judge the warehouse")


def test_check_metrics_use_the_providers_words(both: Fake, workdir: Path) -> None:
    assert cli("run", "--provider", "together").exit_code == 0
    path = workdir / "check.prom"
    cli("check", "--provider", "together", "--prometheus", str(path))
    text = path.read_text()
    assert "# HELP cohere_events_stale_models Jobs stuck in pending, queued" in text
    assert 'current_status="None"' not in text


def write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def test_the_room_is_the_least_that_a_cgroup_or_a_parent_leaves(tmp_path: Path) -> None:
    membership = tmp_path / "proc-cgroup"
    # cgroup v2: the job's own group has no limit, its parent (the container) 300 MB with 100 MB in use
    write(membership, "0::/container/job\n")
    write(tmp_path / "v2/container/job/memory.max", "max\n")
    write(tmp_path / "v2/container/job/memory.current", "50000000\n")
    write(tmp_path / "v2/container/memory.max", "300000000\n")
    write(tmp_path / "v2/container/memory.current", "100000000\n")
    assert cgroup_room_bytes(tmp_path / "v2", membership) == 200_000_000
    # cgroup v1: memory.limit_in_bytes, "no limit" as a huge number
    write(membership, "4:memory:/box\n1:cpu:/box\n")
    write(tmp_path / "v1/memory/box/memory.limit_in_bytes", "314572800\n")
    write(tmp_path / "v1/memory/box/memory.usage_in_bytes", "14572800\n")
    write(tmp_path / "v1/memory/memory.limit_in_bytes", "9223372036854771712\n")
    write(tmp_path / "v1/memory/memory.usage_in_bytes", "1\n")
    assert cgroup_room_bytes(tmp_path / "v1", membership) == 300_000_000
    write(membership, "0::/\n")
    assert cgroup_room_bytes(tmp_path / "nothing", membership) is None


def test_the_retry_cap_in_a_real_300_mb_cgroup_stays_within_it(tmp_path: Path) -> None:
    """In a real memory cgroup of 300 MB, the roomier cap is bounded by it (about 11 GB from the host, before)."""
    for mount, limit_file in (
        (Path("/sys/fs/cgroup"), "memory.max"),
        (Path("/sys/fs/cgroup/memory"), "memory.limit_in_bytes"),
    ):
        if (mount / limit_file).exists() or (mount / "cgroup.procs").exists():
            group = mount / f"cohere-events-test-{os.getpid()}"
            try:
                group.mkdir()
            except OSError:
                continue  # not ours to make here
            break
    else:
        group = None
    if group is None:
        pytest.skip("this machine lets no process make a memory cgroup")  # the file-tree test above still runs
    try:
        (group / limit_file).write_text(str(300 << 20))
        child = subprocess.run(
            [sys.executable, "-c", "import os,sys; open(sys.argv[1],'w').write(str(os.getpid())); "
             "from pipelines.runner import roomier_cap_mb; print(roomier_cap_mb())", str(group / "cgroup.procs")],
            capture_output=True, text=True, timeout=120, cwd=Path(__file__).parent.parent,
        )  # fmt: skip
        assert child.returncode == 0, child.stderr
        assert 16 <= int(child.stdout.strip()) <= 150
    finally:
        time.sleep(0.2)
        group.rmdir()
