"""A cron job pays every import of a fresh process: commands must not import what they do not use."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from tests.support import Fake, cli

HEAVY = ("dlt", "pyarrow", "pandas", "duckdb", "httpx", "sqlglot", "numpy")

IMPORTED_BY = """
import sys
from pipelines.cli import app
try:
    app(sys.argv[1:])
except SystemExit as done:
    print("exit", done.code)
print("heavy:", sorted(name for name in {heavy!r} if name in sys.modules))
"""


def imported_by(arguments: list[str], cwd: Path) -> str:
    """Run the CLI with ``arguments`` in a fresh process; its stdout, ending with the heavy modules it imported."""
    env = {k: v for k, v in os.environ.items() if k not in ("CO_API_KEY", "COHERE_API_KEY")}
    done = subprocess.run(
        [sys.executable, "-c", IMPORTED_BY.format(heavy=HEAVY), *arguments],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


def test_help_imports_nothing_heavy(tmp_path: Path) -> None:
    out = imported_by(["--help"], tmp_path)
    assert "exit 0" in out and "heavy: []" in out, out


def test_command_help_imports_nothing_heavy(tmp_path: Path) -> None:
    for command in ("run", "report", "export", "views"):
        out = imported_by([command, "--help"], tmp_path)
        assert "exit 0" in out and "heavy: []" in out, (command, out)


def test_report_imports_neither_the_runner_nor_arrow_nor_http(fake: Fake, workdir: Path) -> None:
    """``report`` reads the DuckDB file: no pyarrow, httpx or sqlglot (dlt it still needs for its settings)."""
    assert cli("run", "--quiet").exit_code == 0
    out = imported_by(["report", "--format", "json"], workdir)
    assert "exit 0" in out, out
    heavy = out.strip().splitlines()[-1]
    for name in ("pyarrow", "pandas", "httpx", "numpy"):
        assert name not in heavy, heavy


def test_the_environment_is_compiled_once_per_change_in_the_background_and_silently(tmp_path: Path) -> None:
    """No "Bytecode compiled" line on every command: the first command after the environment changed starts
    compileall in the background and says nothing; the next one finds the stamp and starts nothing."""
    import sysconfig

    from pipelines.bytecode import STAMP, environment_fingerprint

    stamp = Path(sys.prefix) / STAMP
    stamp.unlink(missing_ok=True)
    script = str(Path(sys.executable).parent / "cohere-events")
    first = subprocess.run([script, "--help"], cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert first.returncode == 0 and first.stderr == ""
    packages = Path(sysconfig.get_paths()["purelib"])
    deadline = time.monotonic() + 240  # one worker: the whole environment takes a while
    while not stamp.is_file() and time.monotonic() < deadline:
        time.sleep(0.5)
    assert stamp.read_text() == environment_fingerprint(packages)  # written once the compile finished
    again = subprocess.run([script, "--help"], cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert again.returncode == 0 and again.stderr == ""
    assert stamp.read_text() == environment_fingerprint(packages)

    fake_packages = tmp_path / "site-packages"
    (fake_packages / "dlt-1.31.0.dist-info").mkdir(parents=True)
    before = environment_fingerprint(fake_packages)
    (fake_packages / "dlt-1.31.0.dist-info").rename(fake_packages / "dlt-1.32.0.dist-info")
    assert environment_fingerprint(fake_packages) != before, "an upgrade is a change"


def test_a_killed_compile_leaves_no_stamp_and_the_next_command_compiles_again(tmp_path: Path) -> None:
    """The stamp is written only after the compile succeeded: one killed midway (systemd ends a oneshot unit's
    leftovers) is started again by the next command, and it compiles with one worker."""
    from pipelines.bytecode import compile_when_changed, environment_fingerprint

    packages, stamp = tmp_path / "site-packages", tmp_path / "stamp"
    (packages / "pkg-1.0.dist-info").mkdir(parents=True)
    for index in range(3000):
        (packages / f"module_{index}.py").write_text("".join(f"def f{n}(x):\n    return x + {n}\n" for n in range(50)))
    killed = compile_when_changed(packages, stamp)
    assert killed is not None
    time.sleep(0.3)
    killed.kill()
    killed.wait()
    assert not stamp.exists()
    again = compile_when_changed(packages, stamp)
    assert again is not None and again.wait(timeout=240) == 0
    assert stamp.read_text() == environment_fingerprint(packages)
    assert compile_when_changed(packages, stamp) is None  # compiled: nothing more to do
