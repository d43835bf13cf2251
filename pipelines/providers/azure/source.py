"""The dlt source for Azure OpenAI's fine-tuning jobs: OpenAI's source, named for its own dataset and config
section (``[sources.azure_openai_finetuning]``), reading with Azure's auth."""

from __future__ import annotations

from pipelines.providers.azure.client import AzureOpenAiClient
from pipelines.providers.openai.source import SOURCE_TABLES, finetuning_source

azure_openai_finetuning = finetuning_source("azure_openai_finetuning", AzureOpenAiClient, "Azure OpenAI")
make_source = azure_openai_finetuning

__all__ = ["SOURCE_TABLES", "make_source"]
