"""Azure OpenAI's v1 API: OpenAI's fine-tuning endpoints under ``/openai/v1``, with the key in an ``api-key``
header (Microsoft Entra ID tokens are not supported: use a resource key)."""

from __future__ import annotations

from pipelines.providers.openai.client import OpenAiClient


class AzureOpenAiClient(OpenAiClient):
    """OpenAI's client with Azure's auth."""

    key_hint = "AZURE_OPENAI_API_KEY"

    def auth_headers(self, api_key: str) -> dict[str, str]:
        return {"api-key": api_key}


CLIENT = AzureOpenAiClient  # the client of a run's head start (pipelines/headstart.py)
