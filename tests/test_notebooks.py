"""The notebooks run top to bottom on a demo warehouse, for each provider, draw their figures, and are committed
without outputs."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import duckdb
import nbformat
import pytest
from nbclient import NotebookClient

from pipelines.providers import all_providers, get

NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"
PATHS = sorted(NOTEBOOKS.glob("*.ipynb"))
MIN_FIGURES = {"fleet_overview.ipynb": 4, "model_timeline.ipynb": 1}
PROVIDERS = list(all_providers())


@pytest.fixture(scope="module")
def demo_warehouse(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``cohere-events demo`` for each provider in a fresh folder, as a user would run it; returns the DuckDB file."""
    folder = tmp_path_factory.mktemp("demo")
    env = {key: value for key, value in os.environ.items() if not key.startswith(("CO_", "COHERE_"))}
    env["DLT_DATA_DIR"] = str(folder / ".dlt-data")
    for provider in PROVIDERS:
        done = subprocess.run(
            [sys.executable, "-m", "pipelines.cli", "demo", "--quiet", "--provider", provider],
            cwd=folder,
            env=env,
            capture_output=True,
            text=True,
            timeout=240,
        )
        assert done.returncode == 0, done.stdout + done.stderr
    path = folder / "cohere_events.duckdb"
    assert path.is_file()
    return path


def figures(notebook: nbformat.NotebookNode) -> int:
    """How many PNG images the executed notebook shows."""
    return sum(
        "image/png" in output.get("data", {})
        for cell in notebook.cells
        if cell.cell_type == "code"
        for output in cell.outputs
    )


def printed(notebook: nbformat.NotebookNode) -> str:
    """Everything the executed notebook printed on stdout."""
    return "".join(
        output.text
        for cell in notebook.cells
        for output in cell.get("outputs", [])
        if output.output_type == "stream" and output.name == "stdout"
    )


def has_training_metrics(warehouse: Path, provider: str) -> bool:
    chosen = get(provider)
    with duckdb.connect(str(warehouse), read_only=True) as con:
        return bool(con.sql(f"select count(*) from {chosen.dataset}.{chosen.metrics_table}").fetchall()[0][0])


def with_provider(notebook: nbformat.NotebookNode, provider: str) -> None:
    """Set the parameters cell's PROVIDER, as papermill would."""
    (cell,) = [cell for cell in notebook.cells if "parameters" in cell.metadata.get("tags", [])]
    assert 'PROVIDER = "cohere"' in cell.source
    cell.source = cell.source.replace('PROVIDER = "cohere"', f"PROVIDER = {provider!r}")


def errors(notebook: nbformat.NotebookNode) -> list[str]:
    """Error outputs and anything written to stderr (warnings included)."""
    found = []
    for cell in notebook.cells:
        for output in cell.get("outputs", []):
            if output.output_type == "error":
                found.append(f"{output.ename}: {output.evalue}")
            elif output.output_type == "stream" and output.name == "stderr":
                found.append(output.text)
    return found


def test_there_are_notebooks() -> None:
    assert {path.name for path in PATHS} >= set(MIN_FIGURES)


@pytest.mark.parametrize("provider", PROVIDERS)
@pytest.mark.parametrize("path", PATHS, ids=[path.stem for path in PATHS])
def test_notebook_runs_on_the_demo_warehouse_and_draws_figures(
    path: Path, provider: str, demo_warehouse: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COHERE_EVENTS_DUCKDB", str(demo_warehouse))
    monkeypatch.setenv("MPLBACKEND", "module://matplotlib_inline.backend_inline")
    before = demo_warehouse.stat().st_mtime_ns
    notebook = nbformat.read(path, as_version=4)
    with_provider(notebook, provider)
    client = NotebookClient(
        notebook, timeout=240, kernel_name="python3", resources={"metadata": {"path": str(NOTEBOOKS)}}
    )
    client.execute()
    assert errors(notebook) == []
    trained = has_training_metrics(demo_warehouse, provider)
    # the training figures come only with metrics; without them the notebook says so instead
    extra = {"fleet_overview.ipynb": int(trained)}.get(path.name, 0)
    assert figures(notebook) >= MIN_FIGURES.get(path.name, 1) + extra
    if path.name == "model_timeline.ipynb":
        assert ("training curves: " in printed(notebook)) == trained
        assert ("no training metrics for " in printed(notebook)) != trained
    if path.name == "fleet_overview.ipynb":
        assert ("no training metrics in this warehouse yet" in printed(notebook)) != trained
    assert demo_warehouse.stat().st_mtime_ns == before  # opened read-only


@pytest.mark.parametrize("path", PATHS, ids=[path.stem for path in PATHS])
def test_committed_notebook_has_no_outputs(path: Path) -> None:
    notebook = nbformat.read(path, as_version=4)
    nbformat.validate(notebook)
    code = [cell for cell in notebook.cells if cell.cell_type == "code"]
    assert code
    assert [cell.outputs for cell in code] == [[] for _ in code]
    assert [cell.execution_count for cell in code] == [None for _ in code]
    assert "widgets" not in notebook.metadata
