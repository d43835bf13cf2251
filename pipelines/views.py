"""The analysis views: DuckDB-dialect SQL files in ``sql/``, (re)created on the pipeline's destination by dlt.

Each ``sql/NN_<view>.sql`` holds one ``select`` and becomes the view ``<view>``, applied in file order.

Views on views: on DuckDB the files are created as they are; DuckDB binds a view's names (tables and earlier
views) in the view's own schema when it is queried, and replacing a view never cascades. Other destinations
need dlt to qualify and translate each query with its schema, which knows the loaded tables but not our views.
So there, before translation, every reference to an earlier view is replaced (with sqlglot, on the parsed query,
never by text) by that view's own query, already expanded the same way, as a subquery aliased with the view's
name. Each view then reads only the source tables (``events``, ``finetuned_models``, ``training_step_metrics``),
dlt can qualify and translate it for any SQL destination, and no view depends on another in the database:
recreating one never breaks or cascades to the others, and PostgreSQL's drop-and-create cannot take dependent
views with it.

Dialects: the files are DuckDB SQL written to translate exactly to every dialect the README names (DuckDB and
MotherDuck, PostgreSQL, BigQuery, Snowflake; tests/test_dialects.py checks each file). Translation is strict: what
sqlglot cannot translate fails the views with a message naming the view, never a view with other semantics. One
function needs more than sqlglot: ``epoch_us`` (exact UTC epoch microseconds, the base of every duration), which
sqlglot passes through unchanged, so ``portable`` writes it in each dialect's own terms first.

Empty warehouses: a run that loaded no models leaves dlt without the source tables (dlt creates tables only for
data), and a warehouse loaded before training metrics existed lacks ``training_step_metrics``. Those are then
created empty through dlt's own job client, from the column hints the source declares, so the views always bind
and simply return no rows.

"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import dlt
import sqlglot
from dlt.common.destination.client import WithStateSync
from dlt.common.schema.typing import TColumnSchema, TTableSchemaColumns
from dlt.common.schema.utils import new_table
from dlt.destinations.job_client_impl import SqlJobClientBase
from sqlglot import ErrorLevel, exp
from sqlglot.errors import UnsupportedError

from pipelines.providers import FRAGMENT, SQL_DIR, Provider, provider_of

# CREATE OR REPLACE VIEW cannot change a view's columns on these: drop and create instead
DROP_BEFORE_CREATE = {"postgres", "redshift"}
# the sqlglot dialects of the destinations the README names (MotherDuck's is duckdb): every view must translate to each
DIALECTS = ("duckdb", "postgres", "bigquery", "snowflake")
TRANSLATION_REVISION = 2  # part of the translation cache's key: bump when the translation code changes its output

log = logging.getLogger(__name__)


def view_files(provider: Provider, sql_dir: Path = SQL_DIR) -> list[tuple[str, str]]:
    """(view name, DuckDB-dialect query) of every view of ``provider``, in file-number order.

    The shared templates in ``sql/`` are rendered with the provider's words (``lifecycle.VIEW_WORDS``); its own
    views are in ``sql/<provider>/``, numbered among them (see :meth:`Provider.view_files`).
    ``sql/<provider>/status_events.sql`` is not a view: it is the ``{{ status_events }}`` of status_intervals.
    """
    folder = sql_dir / provider.sql_name
    words = dict(provider.module("lifecycle").VIEW_WORDS)
    if (folder / FRAGMENT).is_file():
        words["status_events"] = render(fragment(folder / FRAGMENT), words, folder / FRAGMENT)
    return [
        (name, render(path.read_text(encoding="utf-8"), words, path)) for name, path, _ in provider.view_files(sql_dir)
    ]


PLACEHOLDER = re.compile(r"\{\{\s*([a-z_]+)\s*\}\}")


def render(template: str, words: dict[str, str], path: Path) -> str:
    """``template`` with each ``{{ word }}`` replaced; a value of several lines keeps the placeholder's indent."""

    def replace(match: re.Match[str]) -> str:
        word = match.group(1)
        if word not in words:
            raise ValueError(f"{path}: the provider gives no value for {{{{ {word} }}}}")
        indent = match.start() - (template.rfind("\n", 0, match.start()) + 1)
        return words[word].replace("\n", "\n" + " " * indent)

    return PLACEHOLDER.sub(replace, template)


def fragment(path: Path) -> str:
    """A SQL fragment without its leading comment lines."""
    lines = path.read_text(encoding="utf-8").splitlines()
    while lines and (not lines[0].strip() or lines[0].lstrip().startswith("--")):
        lines.pop(0)
    return "\n".join(lines).strip()


def expand_views(views: list[tuple[str, str]]) -> Iterator[tuple[str, str]]:
    """Each view's query with the earlier views it reads replaced by their (expanded) queries."""
    for name, query in expand_view_queries(views):
        yield name, query.sql(dialect="duckdb")


def expand_view_queries(views: list[tuple[str, str]]) -> Iterator[tuple[str, exp.Query]]:
    """``expand_views`` as parsed (DuckDB) queries."""
    expanded: dict[str, exp.Query] = {}
    for name, sql in views:
        query = inline(sqlglot.parse_one(sql, read="duckdb"), expanded)
        expanded[name] = query
        yield name, query.copy()


def inline(query: exp.Expression, views: dict[str, exp.Query]) -> exp.Query:
    """``query`` with unqualified references to ``views`` (not shadowed by its CTEs) made subqueries."""
    ctes = {cte.alias_or_name for cte in query.find_all(exp.CTE)}

    def replace(node: exp.Expression) -> exp.Expression:
        if isinstance(node, exp.Table) and not node.db and node.name in views and node.name not in ctes:
            return exp.Subquery(
                this=views[node.name].copy(), alias=exp.TableAlias(this=exp.to_identifier(node.alias_or_name))
            )
        return node

    result = query.transform(replace)
    if not isinstance(result, exp.Query):
        raise ValueError(f"a view file must hold one select query, not: {query.sql()[:80]}")
    return result


class ViewTranslationError(Exception):
    """A view cannot be translated exactly for the destination's SQL dialect."""


def epoch_micros(value: exp.Expression, dialect: str) -> exp.Expression:
    """Exact microseconds since the Unix epoch (UTC) of a timestamp with time zone, in ``dialect``."""
    if dialect == "duckdb":
        return exp.Anonymous(this="epoch_us", expressions=[value])
    if dialect == "postgres":
        # extract(epoch) is an exact numeric since PostgreSQL 14 (a double before: round it to the microsecond)
        seconds = exp.Extract(this=exp.var("epoch"), expression=value)
        return exp.cast(exp.Round(this=exp.Mul(this=seconds, expression=exp.Literal.number(1_000_000))), "bigint")
    if dialect == "snowflake":
        return exp.Extract(this=exp.var("epoch_microsecond"), expression=value)
    return exp.UnixMicros(this=value)  # UNIX_MICROS: BigQuery's; elsewhere what sqlglot makes of it


def portable(query: exp.Query, dialect: str) -> exp.Query:
    """``query`` (DuckDB) with what sqlglot would not translate written for ``dialect``: ``epoch_us``."""

    def replace(node: exp.Expression) -> exp.Expression:
        if isinstance(node, exp.Anonymous) and node.name.lower() == "epoch_us" and len(node.expressions) == 1:
            return epoch_micros(node.expressions[0], dialect)
        return node

    result = query.copy().transform(replace)
    if not isinstance(result, exp.Query):
        raise ValueError(f"not a select query: {query.sql()[:80]}")
    return result


def translate(name: str, query: exp.Query, dialect: str) -> str:
    """A view's (expanded) query in ``dialect``, unqualified; raises ViewTranslationError where sqlglot cannot."""
    for mod in query.find_all(exp.Mod):
        if isinstance(mod.this, exp.Add | exp.Sub):
            # sqlglot 29 reads `a - b % c` as `(a - b) % c` (and BigQuery then gets MOD(a - b, c))
            raise ViewTranslationError(f"view {name}: put parentheses around `%` and its operands: {mod.sql()}")
    try:
        return portable(query, dialect).sql(dialect=dialect, unsupported_level=ErrorLevel.RAISE)
    except UnsupportedError as error:
        raise ViewTranslationError(f"view {name} cannot be translated for {dialect}: {one_line(error)}") from None


def one_line(error: BaseException) -> str:
    return " ".join(str(error).split())


class _Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.module == "generator":  # what sqlglot's generator could not translate
            self.messages.append(record.getMessage())


@contextmanager
def unsupported_raises(name: str, dialect: str) -> Iterator[None]:
    """Fail where sqlglot generates SQL it cannot translate: it only logs a warning unless told otherwise, which
    dlt's ``to_sql`` does not tell it."""
    logger = logging.getLogger("sqlglot")
    handler, level = _Collect(), logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.WARNING)
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
    if handler.messages:
        raise ViewTranslationError(f"view {name} cannot be translated for {dialect}: {'; '.join(handler.messages)}")


def source_tables(provider: Provider) -> dict[str, TTableSchemaColumns]:
    """The provider's tables with the columns its source declares (``SOURCE_TABLES`` of its source module)."""
    tables: dict[str, TTableSchemaColumns] = provider.module("source").SOURCE_TABLES
    return tables


def view_schema(pipeline: dlt.Pipeline) -> dlt.Schema:
    """A copy of the pipeline's schema that surely has the source tables, with the columns the source declares."""
    provider = provider_of(pipeline)
    schema = pipeline.default_schema.clone() if pipeline.default_schema_name else dlt.Schema(provider.dataset)
    for table, columns in source_tables(provider).items():
        if table not in schema.tables:
            declared: list[TColumnSchema] = [{**column, "name": name} for name, column in columns.items()]
            schema.update_table(new_table(table, write_disposition="merge", columns=declared))
    return dlt.Schema.from_stored_schema(schema.to_dict())  # a settled version, as dlt's job clients require


def ensure_source_tables(client: SqlJobClientBase, provider: Provider) -> list[str]:
    """Create the source tables the warehouse lacks, empty, with dlt's DDL for this destination."""
    if not client.is_storage_initialized():
        client.initialize_storage()
    missing = [table for table, columns in client.get_storage_tables(source_tables(provider)) if not columns]
    if missing:
        # dlt's own tables too (if not there yet): the schema version is stored, as on any dlt table creation
        tables = [*missing, *client.schema.dlt_table_names()]
        client.update_stored_schema(only_tables=tables, force=isinstance(client, WithStateSync))
    return missing


def translated_views(pipeline: dlt.Pipeline, schema: dlt.Schema, sql_dir: Path = SQL_DIR) -> list[tuple[str, str]]:
    """Every view's query in the destination's dialect, qualified for its dataset.

    DuckDB takes the files as they are: they are DuckDB SQL, DuckDB resolves a view's unqualified names (tables and
    earlier views) in the view's own schema when the view is queried, and replacing a view never cascades. Elsewhere
    each view is translated strictly (``translate``), then qualified and translated by dlt with the same strictness.
    That takes sqlglot most of a second, so the result is kept in the pipeline's working folder and reused until the
    SQL files, the translation, the destination, the dataset or the schema change.
    """
    files = view_files(provider_of(pipeline), sql_dir)
    if pipeline.destination.destination_type == "dlt.destinations.duckdb":
        return files
    identity = repr(
        (
            files,
            TRANSLATION_REVISION,
            sqlglot.__version__,
            pipeline.destination.destination_type,
            pipeline.dataset_name,
            schema.version_hash,
        )
    )
    key = hashlib.sha256(identity.encode()).hexdigest()
    cache = Path(pipeline.working_dir) / "translated_views.json"
    try:
        cached = json.loads(cache.read_text(encoding="utf-8"))
        if cached["key"] == key:
            return [(name, sql) for name, sql in cached["queries"]]
    except (OSError, ValueError, KeyError, TypeError):
        pass  # no cache yet, or an unreadable one: translate afresh
    dataset = pipeline.dataset(schema=schema)
    dialect = str(dataset.destination_dialect)
    queries = []
    for name, query in expand_view_queries(files):
        translate(name, query, dialect)  # raises what sqlglot cannot translate, before dlt would only warn
        with unsupported_raises(name, dialect):
            queries.append((name, dataset.query(portable(query, dialect), query_dialect="duckdb").to_sql()))
    cache.write_text(json.dumps({"key": key, "queries": queries}), encoding="utf-8")
    return queries


def has_dataset(pipeline: dlt.Pipeline) -> bool:
    """Whether the pipeline's dataset exists in its destination (a provider that loaded this warehouse)."""
    try:
        with pipeline.sql_client() as client:
            return bool(client.has_dataset())
    except Exception:  # a destination without SQL, or one that cannot be reached: nothing to create views in
        return False


def create_views(pipeline: dlt.Pipeline) -> list[str]:
    """Create or replace every view in one transaction; returns the view names in creation order."""
    schema = view_schema(pipeline)
    dataset = pipeline.dataset(schema=schema)
    queries = translated_views(pipeline, schema)
    with dataset.destination_client as client:
        if not isinstance(client, SqlJobClientBase):
            log.warning("destination %s has no SQL views; skipped them", pipeline.destination.destination_name)
            return []
        created = ensure_source_tables(client, provider_of(pipeline))
        if created:
            log.info("created empty source tables %s", ", ".join(created))
        sql_client = client.sql_client
        drop_first = client.config.destination_type in DROP_BEFORE_CREATE
        with sql_client.begin_transaction():
            for name, sql in queries:
                view = sql_client.make_qualified_table_name(name)
                if drop_first:
                    sql_client.execute_sql(f"drop view if exists {view} cascade")
                    sql_client.execute_sql(f"create view {view} as {sql}")
                else:
                    sql_client.execute_sql(f"create or replace view {view} as {sql}")
    return [name for name, _ in queries]
