"""A simulated Azure OpenAI fine-tuning API: OpenAI's simulator served under ``/openai/v1`` with Azure's ``api-key``
header, as ``https://RESOURCE.openai.azure.com/openai/v1/fine_tuning/jobs`` answers."""

from __future__ import annotations

from typing import Any

from pipelines.providers.openai.simulator import FakeOpenAiApi, World
from pipelines.simulated import FakeApiServer, serve_forever  # noqa: F401  # re-exported: the server every simulator shares

DEFAULT_API_KEY = "simulated-azure-openai-key"
BASE_PATH = "/openai/v1"


def fake_api(world: World, api_key: str = DEFAULT_API_KEY, **options: Any) -> FakeOpenAiApi:
    """OpenAI's simulated API as Azure serves it."""
    return FakeOpenAiApi(world, api_key, prefix=BASE_PATH, key_header="api-key", **options)


def demo_api(
    jobs: int = 60,
    seed: int = 13,
    api_key: str = DEFAULT_API_KEY,
    latency_ms: float = 0.0,
    rate_limit: int = 0,
    **faults: Any,
) -> FakeOpenAiApi:
    """The simulated API of ``demo`` and ``fake-api``; ValueError for a fault switch of another simulator's."""
    unsupported = [name for name, value in faults.items() if value]
    if unsupported:
        raise ValueError(f"the simulated Azure OpenAI API has no {', '.join(unsupported)} switch")
    return fake_api(World.timeline(seed=seed, jobs=jobs), api_key, latency_ms=latency_ms, rate_limit=rate_limit)
