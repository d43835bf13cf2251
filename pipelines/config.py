"""Where settings come from: the API key and base URL, the warehouse, dlt's working folder."""

from __future__ import annotations

import hashlib
import math
import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipelines import providers
from pipelines.changes import DEFAULT_RECHECK_HOURS

if TYPE_CHECKING:
    from pipelines.providers import Provider

PIPELINE_NAME = "cohere_events"
DATASET_NAME = "cohere_finetuning"
DUCKDB_FILE = "cohere_events.duckdb"
NO_FILE = "the DuckDB credentials name no database file ({}): give a file path, e.g. cohere_events.duckdb"
PIPELINE_LOCATION = ":pipeline:"  # dlt's marker for a DuckDB file in the pipeline's working folder


class ConfigError(Exception):
    """Bad usage or configuration: exit status 2."""


def provider(name: str | None = None) -> Provider:
    """The provider called ``name`` (default: Cohere); ConfigError naming the choices when there is none."""
    try:
        return providers.get(name or providers.DEFAULT)
    except ValueError as error:
        raise ConfigError(str(error)) from None


def api_key(name: str | None = None) -> str:
    """The provider's key: its SDK's variables (Cohere: CO_API_KEY, else COHERE_API_KEY; Together AI:
    TOGETHER_API_KEY), else dlt's secrets (``[sources.<dataset>] api_key``, toml or environment)."""
    chosen = provider(name)
    value = environment_api_key(name)
    if value:
        return value
    import dlt  # here, not at the top: `import dlt` is half a second that `--help` never needs

    value = dlt.secrets.get(f"sources.{chosen.dataset}.api_key")
    if value:
        return str(value).strip()
    raise ConfigError(f"no {chosen.title} API key: {chosen.key_help}")


def environment_api_key(name: str | None = None) -> str:
    """The provider's key from its SDK's variables, the first place :func:`api_key` looks; "" when none has it."""
    for variable in provider(name).key_variables:
        value = os.environ.get(variable, "").strip()
        if value:
            return value
    return ""


def secret_values() -> list[str]:
    """Every key this process could be using, to scrub from anything printed."""
    names = [
        variable
        for each in providers.all_providers().values()
        for variable in (*each.key_variables, f"SOURCES__{each.dataset.upper()}__API_KEY")
    ]
    values = [os.environ.get(name, "").strip() for name in names]
    return [value for value in values if len(value) >= 4]


def base_url(name: str | None = None) -> str:
    """The provider's base URL, from its SDK's variable (CO_API_URL, TOGETHER_BASE_URL, OPENAI_BASE_URL,
    AZURE_OPENAI_ENDPOINT), else its default; for Together AI a base ending in /v1 (the 1.x SDK's) works too, and an
    Azure endpoint gets /openai/v1 when it lacks it."""
    chosen = provider(name)
    variable = chosen.base_url_variable
    url = (os.environ.get(variable, "").strip() or chosen.default_base_url).rstrip("/")
    if not url:
        raise ConfigError(f"no {chosen.title} endpoint: set {variable} (e.g. https://RESOURCE.openai.azure.com)")
    if not url.startswith(("http://", "https://")):
        raise ConfigError(f"{variable} must start with http:// or https://, not {url!r}")
    if chosen.strip_suffix and url.endswith(chosen.strip_suffix):
        url = url.removesuffix(chosen.strip_suffix)
    if chosen.add_suffix and not url.endswith(chosen.add_suffix):
        url += chosen.add_suffix
    return url


def destination_identity(destination: str) -> str:
    """What tells one warehouse from another: the DuckDB file's absolute path, else the credentials.

    For DuckDB this is the file a new pipeline would write from here, so the default ``cohere_events.duckdb`` in the
    working directory keeps the identity (and dlt working folder) it always had.
    """
    import dlt

    if destination == "duckdb":
        database = duckdb_database()
        return database if database == PIPELINE_LOCATION else str(Path(database).resolve())
    return f"{destination}:{dlt.secrets.get(f'destination.{destination}.credentials')!s}"


def duckdb_path() -> Path:
    """The DuckDB file that ``run`` writes, found the way dlt's duckdb destination finds it for this pipeline.

    dlt places a relative path (or the default ``cohere_events.duckdb``) in the folder where the pipeline was first
    created (its local state's ``initial_cwd``), and ``:pipeline:`` in the pipeline's working folder, so both are read
    from dlt's working folder when it exists. ConfigError when the credentials name no file (``:memory:``).
    """
    working_dir = pipelines_dir("duckdb") / PIPELINE_NAME
    local = local_state(working_dir)
    database = duckdb_database(
        pipeline_working_dir=str(working_dir),
        local_dir=local.get("initial_cwd"),
        legacy_db_path=local.get("duckdb_database"),
    )
    return Path(database).resolve()


_resolved: dict[tuple[tuple[str, str | None], ...], str] | None = None  # see settled()


@contextmanager
def settled() -> Iterator[None]:
    """Within the block, resolve dlt's DuckDB credentials once for each set of arguments: they cannot change in the
    middle of a command, and a run asked for them six times at about 40 ms of dlt's configuration resolution each."""
    global _resolved
    outer = _resolved
    _resolved = {} if outer is None else outer
    try:
        yield
    finally:
        _resolved = outer


def duckdb_database(**local_files: str | None) -> str:
    """The ``database`` of dlt's resolved duckdb credentials (secrets, config, environment, pipeline sections).

    ``local_files`` binds what a pipeline binds (working folder, ``initial_cwd``); unbound, a relative path is taken
    from dlt's local dir (the working directory) and ``:pipeline:`` is returned as it is.
    """
    key = tuple(sorted(local_files.items()))
    if _resolved is not None and key in _resolved:
        return _resolved[key]
    database = resolve_duckdb_database(**local_files)
    if _resolved is not None:
        _resolved[key] = database
    return database


def resolve_duckdb_database(**local_files: str | None) -> str:
    """:func:`duckdb_database`, resolved by dlt every time."""
    import dlt
    from dlt.common.configuration.exceptions import ConfigurationException
    from dlt.common.configuration.resolve import inject_section
    from dlt.common.configuration.specs.config_section_context import ConfigSectionContext
    from dlt.destinations.impl.duckdb.configuration import NON_ATTACHABLE_LOCATIONS
    from dlt.destinations.impl.duckdb.exceptions import InvalidInMemoryDuckdbCredentials

    bound: dict[str, Any] = {key: value for key, value in local_files.items() if value is not None}
    factory = dlt.destinations.duckdb(pipeline_name=PIPELINE_NAME, **bound)
    initial = factory.spec()
    initial.dataset_name = DATASET_NAME
    section = ConfigSectionContext(
        pipeline_name=PIPELINE_NAME, sections=(), merge_style=ConfigSectionContext.prefer_existing
    )
    try:
        with inject_section(section):
            database = factory.configuration(initial).credentials.database
    except RuntimeError as error:
        if PIPELINE_LOCATION in str(error):  # `:pipeline:` without the pipeline's working folder
            return PIPELINE_LOCATION
        raise
    except InvalidInMemoryDuckdbCredentials:
        raise ConfigError(NO_FILE.format(":memory:")) from None
    except ConfigurationException as error:
        first = (str(error).strip().splitlines() or [type(error).__name__])[0]
        raise ConfigError(f"bad DuckDB credentials: {first}") from None
    if not isinstance(database, str) or database in NON_ATTACHABLE_LOCATIONS:
        raise ConfigError(NO_FILE.format(database))
    return database


def local_state(working_dir: Path) -> dict[str, Any]:
    """The ``_local`` part of dlt's pipeline state in ``working_dir``; empty when there is none yet."""
    from dlt.common.versioned_state import json_decode_state

    try:
        state = json_decode_state((working_dir / "state.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    local = state.get("_local") if isinstance(state, dict) else None
    return local if isinstance(local, dict) else {}


def new_local_warehouse(destination: str) -> bool:
    """Whether a run would create its warehouse: DuckDB's default file in this folder is not there, and nothing could
    place the warehouse elsewhere (no variable and no dlt toml file names a destination or DuckDB). Found without
    dlt, to start asking early (pipelines/headstart.py); when in doubt, False."""
    if destination != "duckdb" or Path(DUCKDB_FILE).exists():
        return False
    if any("DESTINATION" in name.upper() or "DUCKDB" in name.upper() for name in os.environ):
        return False
    folders = {Path(".dlt"), Path.home() / ".dlt"}
    folders |= {
        Path(os.environ[name]) / suffix
        for name, suffix in (("DLT_PROJECT_DIR", ".dlt"), ("DLT_DATA_DIR", ""))
        if os.environ.get(name)
    }
    for folder in folders:
        for toml in folder.glob("*.toml") if folder.is_dir() else ():
            try:
                text = toml.read_text(encoding="utf-8", errors="replace").lower()
            except OSError:
                return False
            if "destination" in text or "duckdb" in text:
                return False
    return True


def existing_warehouse(command: str) -> Path:
    """The local DuckDB file that ``command`` reads; ConfigError, saying where the path came from, when there is
    none."""
    path = duckdb_path()
    if not path.is_file():
        raise ConfigError(
            f"no warehouse at {path} ({warehouse_origin(path)}): run `cohere-events run` (or `demo`) first"
        )
    return path


def warehouse_origin(path: Path) -> str:
    """Where the warehouse's path came from, for a user who expected another one."""
    for variable in ("DESTINATION__DUCKDB__CREDENTIALS", "DESTINATION__DUCKDB__CREDENTIALS__DATABASE"):
        if os.environ.get(variable):
            return f"from {variable}"
    if path.parent != Path.cwd().resolve():
        return "where this folder's dlt state or .dlt/config.toml places it"
    return "the default, in this folder"


SQL_DESTINATIONS = "duckdb (the default), postgres, motherduck, bigquery, snowflake or another dlt SQL destination"


def check_destination(name: str) -> None:
    """ConfigError, in one line, for a destination dlt does not know or one that cannot merge."""
    if name == "filesystem":
        raise ConfigError(
            "the filesystem destination cannot merge plain files, so every run would duplicate the events it "
            "re-reads; load a SQL destination and use `cohere-events export DIR` for a Parquet lake"
        )
    if name == "duckdb":
        return  # the default, which every run resolves anyway
    from dlt.common.destination import Destination

    try:
        Destination.from_reference(name)
    except Exception:
        raise ConfigError(f"unknown destination {name!r}: use {SQL_DESTINATIONS}") from None


def pipelines_dir(destination: str, dataset: str = DATASET_NAME) -> Path:
    """dlt's working folder for this warehouse's ``dataset``, under DLT_DATA_DIR. The default dataset's (Cohere's)
    also holds the warehouse's locks, shared by every provider's runs.

    One per warehouse, so that two warehouses (a demo one and a real one, or a deleted and recreated file) never
    share cursors: a stale cursor would silently skip events.
    """
    from dlt.common.pipeline import get_dlt_pipelines_dir

    digest = hashlib.sha256(destination_identity(destination).encode()).hexdigest()[:12]
    suffix = "" if dataset == DATASET_NAME else f"-{dataset}"
    return Path(get_dlt_pipelines_dir()) / f"{PIPELINE_NAME}-{destination}-{digest}{suffix}"


@dataclass
class LoadOptions:
    """The options of ``run`` and ``demo``."""

    destination: str = "duckdb"
    provider: str = providers.DEFAULT
    model_ids: Sequence[str] = ()
    page_size: int = 100
    concurrency: int = 16
    requests_per_minute: int = 500
    lookback_seconds: float = 3600
    timeout_seconds: float = 30
    recheck_hours: float = DEFAULT_RECHECK_HOURS
    full: bool = False
    metrics: bool = True
    progress: bool = False

    def validate(self) -> None:
        """ConfigError, in one line, for a value out of range or a destination that cannot be loaded."""
        self.check_values()
        check_destination(self.destination)

    def check_values(self) -> None:
        """:meth:`validate` without the destination (which may need dlt)."""
        for option, value in (
            ("--lookback", self.lookback_seconds),
            ("--timeout", self.timeout_seconds),
            ("--recheck-hours", self.recheck_hours),
        ):
            if not math.isfinite(value):
                raise ConfigError(f"{option} must be a finite number, not {value}")
        checks = {
            "--page-size must be between 1 and 1000": 1 <= self.page_size <= 1000,
            "--concurrency must be between 1 and 256": 1 <= self.concurrency <= 256,
            "--requests-per-minute must be 0 (no limit) or more": self.requests_per_minute >= 0,
            "--lookback must be 0 or more seconds": self.lookback_seconds >= 0,
            "--timeout must be more than 0 seconds": self.timeout_seconds > 0,
            "--recheck-hours must be 0 or more": self.recheck_hours >= 0,
        }
        for message, ok in checks.items():
            if not ok:
                raise ConfigError(message)
