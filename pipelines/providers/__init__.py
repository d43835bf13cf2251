"""Providers: each fine-tuning API this project loads is a package here with the same four modules.

- ``client.py``: its HTTP endpoints, on :class:`pipelines.http.ApiClient`;
- ``source.py``: its dlt source, with ``make_source(...)`` and ``SOURCE_TABLES`` (the tables' declared columns);
- ``simulator.py``: its simulated API, with ``demo_api(...)`` and ``DEFAULT_API_KEY``;
- ``lifecycle.py``: its statuses, outcomes and the words its views are rendered with (``VIEW_WORDS``).

The package's ``__init__.py`` declares ``PROVIDER``, a :class:`Provider`. The core finds providers here by that
name and never imports one by its name: ``--provider`` takes any package found.
"""

from __future__ import annotations

import importlib
import pkgutil
from dataclasses import dataclass
from functools import cache
from types import ModuleType
from typing import Any

DEFAULT = "cohere"  # the provider of `run`, `demo` and `fake-api` when --provider is not given


@dataclass(frozen=True)
class Provider:
    """What the core needs to know of a provider without importing its modules."""

    name: str  # as --provider takes it, and the name of its package
    title: str  # for people: "Cohere"
    dataset: str  # the warehouse dataset (schema), also the dlt source's name and config section
    item: str  # what its list endpoint lists: "model", "job"
    items_table: str
    events_table: str
    metrics_table: str
    id_column: str  # the item's id in the events and metrics tables
    key_variables: tuple[str, ...]  # environment variables that may hold the key, first wins
    base_url_variable: str
    default_base_url: str
    strip_suffix: str = ""  # a base URL ending in this (e.g. "/v1") works too: it is removed

    @property
    def items(self) -> str:
        return f"{self.item}s"

    def module(self, name: str) -> ModuleType:
        """One of the provider's modules (``client``, ``source``, ``simulator``, ``lifecycle``), imported now."""
        return importlib.import_module(f"{__name__}.{self.name}.{name}")

    @property
    def key_help(self) -> str:
        variables = " (or ".join(self.key_variables[:2]) + (")" if len(self.key_variables) > 1 else "")
        return f"set {variables}, or api_key under [sources.{self.dataset}] in .dlt/secrets.toml"


@cache
def all_providers() -> dict[str, Provider]:
    """Every provider package here, by name, the default first."""
    found = {}
    for module in pkgutil.iter_modules(__path__):
        if module.ispkg:
            provider = getattr(importlib.import_module(f"{__name__}.{module.name}"), "PROVIDER", None)
            if isinstance(provider, Provider):
                found[provider.name] = provider
    return dict(sorted(found.items(), key=lambda item: (item[0] != DEFAULT, item[0])))


def get(name: str) -> Provider:
    """The provider called ``name``; ValueError naming the choices when there is none."""
    providers = all_providers()
    if name not in providers:
        raise ValueError(f"unknown provider {name!r}: choose one of {', '.join(providers)}")
    return providers[name]


def provider_of(pipeline: Any) -> Provider:
    """The provider whose data a dlt pipeline loads: by its dataset, else by its schema (named after the source),
    else the default provider (a pipeline with a dataset of another name, as tests make)."""
    for name in (pipeline.dataset_name, pipeline.default_schema_name):
        for provider in all_providers().values():
            if provider.dataset == name:
                return provider
    return get(DEFAULT)
