"""Shared fixtures: a working folder per test, the simulated API on 127.0.0.1, a real PostgreSQL server."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from pipelines.providers.cohere.simulator import FakeApiServer, FakeCohereApi, World
from tests.postgres import postgres_server
from tests.support import NOW, Fake


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Run in a fresh folder with dlt's working state inside it and no key from the developer's shell."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DLT_DATA_DIR", str(tmp_path / ".dlt-data"))
    for name in (
        "CO_API_KEY",
        "COHERE_API_KEY",
        "SOURCES__COHERE_FINETUNING__API_KEY",
        "CO_API_URL",
        "TOGETHER_API_KEY",
        "SOURCES__TOGETHER_FINETUNING__API_KEY",
        "TOGETHER_BASE_URL",
        "OPENAI_API_KEY",
        "SOURCES__OPENAI_FINETUNING__API_KEY",
        "OPENAI_BASE_URL",
        "AZURE_OPENAI_API_KEY",
        "SOURCES__AZURE_OPENAI_FINETUNING__API_KEY",
        "AZURE_OPENAI_ENDPOINT",
    ):
        monkeypatch.delenv(name, raising=False)
    return tmp_path


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A real PostgreSQL server for the session: COHERE_EVENTS_TEST_POSTGRES, else one started from initdb."""
    with postgres_server() as url:
        yield url


@pytest.fixture
def fake(workdir: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Fake]:
    """The simulated API with 25 models on 127.0.0.1, and CO_API_URL / CO_API_KEY pointing at it."""
    world = World(models=25, seed=3, now=NOW)
    api = FakeCohereApi(world)
    with FakeApiServer(api) as server:
        fake = Fake(world, api, server)
        for name, value in fake.env().items():
            monkeypatch.setenv(name, value)
        yield fake
