"""Where settings come from: the API key and base URL, the warehouse, dlt's working folder."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

PIPELINE_NAME = "cohere_events"
DATASET_NAME = "cohere_finetuning"
DUCKDB_FILE = "cohere_events.duckdb"
DEFAULT_BASE_URL = "https://api.cohere.com"
KEY_HELP = "set CO_API_KEY (or COHERE_API_KEY), or api_key under [sources.cohere_finetuning] in .dlt/secrets.toml"


class ConfigError(Exception):
    """Bad usage or configuration: exit status 2."""


def api_key() -> str:
    """The Cohere key: CO_API_KEY, else COHERE_API_KEY, else dlt's secrets (toml or environment)."""
    for name in ("CO_API_KEY", "COHERE_API_KEY"):
        value = os.environ.get(name, "").strip()
        if value:
            return value
    import dlt  # here, not at the top: `import dlt` is half a second that `--help` never needs

    value = dlt.secrets.get("sources.cohere_finetuning.api_key")
    if value:
        return str(value).strip()
    raise ConfigError(f"no Cohere API key: {KEY_HELP}")


def secret_values() -> list[str]:
    """Every key this process could be using, to scrub from anything printed."""
    names = ("CO_API_KEY", "COHERE_API_KEY", "SOURCES__COHERE_FINETUNING__API_KEY")
    values = [os.environ.get(name, "").strip() for name in names]
    return [value for value in values if len(value) >= 4]


def base_url() -> str:
    """The API's base URL: CO_API_URL, as the Cohere SDK reads it, else https://api.cohere.com."""
    url = os.environ.get("CO_API_URL", "").strip() or DEFAULT_BASE_URL
    if not url.startswith(("http://", "https://")):
        raise ConfigError(f"CO_API_URL must start with http:// or https://, not {url!r}")
    return url.rstrip("/")


def destination_identity(destination: str) -> str:
    """What tells one warehouse from another: the DuckDB file's absolute path, else the credentials."""
    import dlt

    if destination == "duckdb":
        path = duckdb_path()
        return str(path) if path else repr(dlt.secrets.get("destination.duckdb.credentials"))
    return f"{destination}:{dlt.secrets.get(f'destination.{destination}.credentials')!s}"


def duckdb_path() -> Path | None:
    """The DuckDB file this run writes, when the destination is the default DuckDB one."""
    import dlt

    configured: Any = dlt.secrets.get("destination.duckdb.credentials")
    if configured and not isinstance(configured, str):
        return None
    return Path(str(configured or DUCKDB_FILE)).resolve()


def existing_warehouse(command: str) -> Path:
    """The local DuckDB file that ``command`` reads; ConfigError when there is none."""
    path = duckdb_path()
    if path is None:
        raise ConfigError(f"{command} reads the local DuckDB warehouse, but its credentials are not a file path")
    if not path.is_file():
        raise ConfigError(f"no warehouse at {path}: run `cohere-events run` (or `demo`) here first")
    return path


def pipelines_dir(destination: str) -> Path:
    """dlt's working folder for this warehouse, under DLT_DATA_DIR.

    One per warehouse, so that two warehouses (a demo one and a real one, or a deleted and recreated file) never
    share cursors: a stale cursor would silently skip events.
    """
    from dlt.common.pipeline import get_dlt_pipelines_dir

    digest = hashlib.sha256(destination_identity(destination).encode()).hexdigest()[:12]
    return Path(get_dlt_pipelines_dir()) / f"{PIPELINE_NAME}-{destination}-{digest}"
