"""The text report at 80, 100 and 120 columns, piped and in a terminal: no line over the width, no word broken."""

from __future__ import annotations

import fcntl
import json
import os
import re
import struct
import subprocess
import sys
import termios
from pathlib import Path

import pytest

from pipelines.layout import Column, Grid, fit, shortened
from tests.support import cli
from tests.test_report import report

WIDTHS = (80, 100, 120)
RULES = "│┃┏┓┗┛┡┩┣┫━─┳┻╇┠┨┯┷┼╋└┘┌┐├┤┬┴"


@pytest.fixture(scope="module")
def demo_warehouse(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One warehouse with the three providers' demo data, real ids and names included."""
    workdir = tmp_path_factory.mktemp("layout")
    cwd = Path.cwd()
    os.chdir(workdir)
    try:
        for provider in ("cohere", "together", "openai"):
            env = {"DLT_DATA_DIR": str(workdir / ".dlt-data")}
            assert cli("demo", "--provider", provider, env=env).exit_code == 0
    finally:
        os.chdir(cwd)
    return workdir


def words_of(warehouse: Path) -> set[str]:
    """Every word the report's tables may show: their titles, headers and cells, read as the report reads them."""
    from pipelines import providers, report

    found = report.read_report(warehouse / "cohere_events.duckdb")
    grids = [report.providers_grid(found)]
    for name in found["providers"]:
        grids += report.grids(report.provider_section(found, name), providers.get(name))
    words: set[str] = set()
    for grid in grids:
        for text in (grid.title, *(c.header for c in grid.columns), *(cell for row in grid.rows for cell in row)):
            words.update(text.split())
    return words


def run_report(workdir: Path, *args: str, columns: str | None = "160") -> subprocess.CompletedProcess[str]:
    done = report(workdir, *args, columns=columns)
    assert done.returncode == 0, done.stderr
    return done


def is_shortened(token: str, known: set[str]) -> bool:
    """An id cut in the middle: the start and end of one whole word, at least 8 and 4 of its characters."""
    head, _, tail = token.partition("…")
    return len(head) >= 8 and len(tail) >= 4 and any(w.startswith(head) and w.endswith(tail) for w in known)


def assert_fits(text: str, width: int, known: set[str]) -> None:
    """No line over ``width`` (but the closing one-line summary), and every word in a table whole."""
    lines = text.rstrip("\n").splitlines()
    assert lines[-1].startswith("report: ")
    for number, line in enumerate(lines[:-1], start=1):
        assert len(line) <= width, f"line {number} is {len(line)} wide, over {width}: {line!r}"
        if not any(rule in line for rule in RULES):
            continue  # titles, notes, headings and stacked tables wrap as prose, between words
        for token in re.split(f"[\\s{RULES}]+", line):
            assert not token or token in known or is_shortened(token, known), (
                f"{token!r} is a piece of a word, at {width} columns: {line!r}"
            )


@pytest.mark.parametrize("width", WIDTHS)
def test_the_piped_report_fits_columns(demo_warehouse: Path, width: int) -> None:
    done = run_report(demo_warehouse, columns=str(width))
    assert_fits(done.stdout, width, words_of(demo_warehouse))
    assert "Time in status" in done.stdout and "Diverged trainings" in done.stdout
    if width == 80:
        assert "left out at this width" in done.stdout  # said, not silently dropped


def test_the_report_in_a_terminal_fits_its_width(demo_warehouse: Path) -> None:
    """A real pseudo-terminal of 80 and 100 columns: rich reads the size from the terminal itself."""
    known = words_of(demo_warehouse)
    for width in (80, 100):
        leader, follower = os.openpty()
        fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 50, width, 0, 0))
        env = {k: v for k, v in os.environ.items() if k != "COLUMNS"}
        env |= {"DLT_DATA_DIR": str(demo_warehouse / ".dlt-data"), "TERM": "dumb"}
        process = subprocess.Popen(
            [sys.executable, "-m", "pipelines.cli", "report"], cwd=demo_warehouse, env=env, stdout=follower
        )
        os.close(follower)
        chunks = []
        while True:
            try:
                chunk = os.read(leader, 65536)
            except OSError:
                break
            if not chunk:
                break
            chunks.append(chunk)
        assert process.wait(timeout=60) == 0
        os.close(leader)
        text = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", b"".join(chunks).decode()).replace("\r\n", "\n")
        assert_fits(text, width, known)


def test_piped_without_columns_is_120_wide(demo_warehouse: Path) -> None:
    done = run_report(demo_warehouse, columns=None)
    widest = max(len(line) for line in done.stdout.splitlines()[:-1])
    assert 100 < widest <= 120


def test_each_provider_says_how_old_its_data_is(demo_warehouse: Path) -> None:
    found = json.loads(run_report(demo_warehouse, "--format", "json").stdout)
    text = run_report(demo_warehouse, columns="100").stdout
    first_lines = " ".join(text.split("\n\n")[0].split())
    for line in found["providers"].values():
        moment = line["data_as_of"][:19].replace("T", " ")
        assert f"{line['title']} data as of {moment} UTC" in first_lines
        assert f"data as of {moment} UTC)" in text  # and again above its own tables


def test_ids_are_shortened_in_the_middle_and_stay_unique() -> None:
    ids = ["051c2af2-b9f7-bbc9-3144-25bebec05d80", "051c2af2-aaaa-bbc9-3144-00000ec05d80", "short"]
    cut = shortened(ids)
    assert cut[2] == "short" and len(set(cut)) == 3
    assert all(c.startswith(i[:8]) and c.endswith(i[-4:]) and "…" in c for c, i in zip(cut[:2], ids[:2], strict=True))


def test_a_table_too_wide_for_any_columns_is_stacked() -> None:
    from rich.console import Console

    grid = Grid("Wide", [Column("base model"), Column("median final train loss", "figure"), Column("jobs", "figure")])
    grid.rows = [["meta-llama/Llama-3.3-70B-Instruct-Reference", "0.628", "12"]]
    for width in (60, 48):
        console = Console(width=width, record=True)
        for part in fit(grid, width):
            console.print(part)
        text = console.export_text()
        assert "meta-llama/Llama-3.3-70B-Instruct-Reference" in text and "┃" not in text
        assert all(len(line) <= width for line in text.splitlines())
