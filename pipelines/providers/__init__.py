"""Providers: each fine-tuning API this project loads is a package here with the same four modules.

- ``client.py``: its HTTP endpoints, on :class:`pipelines.http.ApiClient`, and ``CLIENT``, that class (a run's head
  start asks with it: see its ``head_start``);
- ``source.py``: its dlt source, with ``make_source(...)`` and ``SOURCE_TABLES`` (the tables' declared columns);
- ``simulator.py``: its simulated API, with ``demo_api(...)`` and ``DEFAULT_API_KEY``;
- ``lifecycle.py``: its statuses, outcomes and the words its views are rendered with (``VIEW_WORDS``).

The package's ``__init__.py`` declares ``PROVIDER``, a :class:`Provider`. The core finds providers here by that
name and never imports one by its name: ``--provider`` takes any package found.

A service that serves another provider's API (Azure OpenAI serves OpenAI's) names that provider as its
``implementation``: its package holds only what differs (its auth, its source's name, its simulator's paths), every
other module and its SQL (``sql/<implementation>/``) are that provider's.
"""

from __future__ import annotations

import importlib
import importlib.util
import pkgutil
import re
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from types import ModuleType
from typing import Any

DEFAULT = "cohere"  # the provider of `run`, `demo` and `fake-api` when --provider is not given
SQL_DIR = Path(__file__).resolve().parent.parent.parent / "sql"
VIEW_FILE = re.compile(r"^\d+_([a-z][a-z0-9_]*)\.sql$")
FRAGMENT = "status_events.sql"  # sql/<provider>/status_events.sql: a part of status_intervals, not a view


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
    add_suffix: str = ""  # a base URL without this path (e.g. "/openai/v1") gets it
    implementation: str = ""  # the provider whose modules and SQL this one shares, where it has none of its own

    @property
    def items(self) -> str:
        return f"{self.item}s"

    @property
    def sql_name(self) -> str:
        """The folder of its own views under ``sql/``: its implementation's."""
        return self.implementation or self.name

    def module(self, name: str) -> ModuleType:
        """One of the provider's modules (``client``, ``source``, ``simulator``, ``lifecycle``), imported now: its
        own, else its implementation's."""
        package = self.name
        if self.implementation and importlib.util.find_spec(f"{__name__}.{self.name}.{name}") is None:
            package = self.implementation
        return importlib.import_module(f"{__name__}.{package}.{name}")

    def view_files(self, sql_dir: Path = SQL_DIR) -> list[tuple[str, Path, bool]]:
        """(view name, file, shared) of every view of this provider in file-number order: the shared templates in
        ``sql/`` (named after their file unless ``lifecycle.VIEW_NAMES`` renames them) and its own in
        ``sql/<name>/``."""
        renamed: dict[str, str] = getattr(self.module("lifecycle"), "VIEW_NAMES", {})
        files = [(path, True) for path in sql_dir.glob("*.sql")]
        files += [(path, False) for path in (sql_dir / self.sql_name).glob("*.sql") if path.name != FRAGMENT]
        views = []
        for path, shared in sorted(files, key=lambda file: file[0].name):
            match = VIEW_FILE.match(path.name)
            if not match:
                raise ValueError(f"{path}: view files are named NN_<view>.sql")
            name = renamed.get(match.group(1), match.group(1)) if shared else match.group(1)
            views.append((name, path, shared))
        return views

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
