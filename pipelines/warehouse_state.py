"""The warehouse, not dlt's local working folder, says what has been loaded.

dlt keeps the pipeline state (each model's cursor, highest step and fingerprint, the last re-check) in two places:
the warehouse, which commits it with every load, and the local working folder under ``DLT_DATA_DIR``. dlt trusts the
local copy unless the warehouse's is newer. But the warehouse is what operators delete, restore from last night's
backup and move; a local copy that ran ahead of it then skips, for good, what the warehouse no longer holds.

So before anything loads, :func:`trust_the_warehouse` compares the local state with the newest state the warehouse
committed (by dlt's version hash). When they differ, the local marks are discarded: the warehouse's state replaces
them, or, when the warehouse holds none (deleted, new, or made by ``views`` alone), the run starts over. A load
package left by an interrupted run is finished only when it was extracted on top of the state the warehouse holds
(the source records that state's hash in the package as ``based_on``); otherwise it is deleted, and its models are
read again from what the warehouse proves.

The newest state is the one with the highest version. dlt itself takes the newest load id, which is a time: one run
on a host whose clock ran ahead would stay "newest" until the clock caught up.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import dlt
from dlt.common.destination.exceptions import DestinationUndefinedEntity
from dlt.common.versioned_state import decompress_state, json_decode_state, json_encode_state
from dlt.pipeline.state_sync import mark_state_extracted, migrate_state_to_current

from pipelines.extract import BASED_ON
from pipelines.providers import provider_of

STATE_FILE = "state.json"
DISCARDED = "discarded an interrupted run's load package made for another copy of the warehouse"


def warehouse_state_hash(pipeline: dlt.Pipeline) -> str:
    """The version hash of the newest state this pipeline committed to the warehouse; "" when it holds none."""
    row = newest_stored_state(pipeline, "s.version_hash")
    return str(row[0] or "") if row else ""


def newest_stored_state(pipeline: dlt.Pipeline, columns: str) -> tuple[Any, ...] | None:
    """``columns`` of the newest committed state row (highest version, then load id); None when there is none."""
    try:
        with pipeline.sql_client() as client:
            state = client.make_qualified_table_name("_dlt_pipeline_state")
            loads = client.make_qualified_table_name("_dlt_loads")
            rows = client.execute_sql(
                f"select {columns} from {state} as s join {loads} as l on l.load_id = s._dlt_load_id "
                "where s.pipeline_name = %s and l.status = 0 order by s.version desc, l.load_id desc limit 1",
                pipeline.pipeline_name,
            )
    except DestinationUndefinedEntity:  # no dataset, or no state table: nothing was ever loaded there
        return None
    return tuple(rows[0]) if rows else None


def trust_the_warehouse(pipeline: dlt.Pipeline) -> tuple[list[str], str]:
    """Make the local state agree with the warehouse before a run loads anything; returns what was done, for the
    summary (nothing in the usual case, where the two agree), and the version hash of the newest state the warehouse
    holds ("" when none), as :func:`warehouse_state_hash` gives it."""
    newest = newest_stored_state(pipeline, "s.version_hash, s.version")
    stored, version = (str(newest[0] or ""), newest[1]) if newest else ("", None)
    path = Path(pipeline.working_dir) / STATE_FILE
    if not path.is_file():
        return [], stored  # nothing local to trust: dlt restores the warehouse's state itself
    local = json_decode_state(path.read_text(encoding="utf-8"))
    source = provider_of(pipeline).dataset  # each provider's source is named after its dataset
    local_hash = str(local.get("_version_hash") or "")
    notes: list[str] = []
    if pipeline.has_pending_data:
        if stored in (local_hash, based_on(local, source)) or continues(local, version, source):
            return [], stored  # the package continues what the warehouse holds: the run finishes it first
        pipeline._delete_pending_packages()  # dlt's own clean-up; abort_packages would record a load in this warehouse
        notes.append(DISCARDED)
    if stored == local_hash:
        return notes, stored
    row = newest_stored_state(pipeline, "s.state") if stored else None
    if row:
        write_state(path, installed(pipeline.pipeline_name, str(row[0]), local))
    elif source in local.get("sources", {}):
        forget_loads(local, source)
        write_state(path, local)
        notes.append("the warehouse holds no state of an earlier load: every model is read from the start")
    return notes, stored


def installed(pipeline_name: str, compressed: str, local: dict[str, Any]) -> dict[str, Any]:
    """The warehouse's state as dlt would install it, with this host's ``_local`` part."""
    state: dict[str, Any] = dict(migrate_state_to_current(pipeline_name, decompress_state(compressed)))
    state["_local"] = local.get("_local", {})
    mark_state_extracted(state, state["_version_hash"])  # type: ignore[arg-type]
    return state


def continues(local: dict[str, Any], stored_version: Any, source: str) -> bool:
    """For a package extracted before ``based_on`` was kept (the previous release): whether its state is the one
    right after the warehouse's newest, as dlt numbers them."""
    if based_on(local, source) is not None:
        return False
    if stored_version is None:
        return int(local.get("_state_version", 0)) <= 1  # a first load, killed after extracting
    return int(local.get("_state_version", 0)) == int(stored_version) + 1


def based_on(state: dict[str, Any], source: str) -> str | None:
    """The warehouse state that the extraction of a pending package started from (None before this was kept)."""
    value = state.get("sources", {}).get(source, {}).get(BASED_ON)
    return None if value is None else str(value)


def forget_loads(state: dict[str, Any], source: str) -> None:
    """Drop what the local state says was loaded: the source's marks and the state's version."""
    state.get("sources", {}).pop(source, None)
    state["_state_version"] = 0
    state.pop("_version_hash", None)


def write_state(path: Path, state: dict[str, Any]) -> None:
    """Replace dlt's local state file whole (written beside it, then renamed over it)."""
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    temporary.write_text(json_encode_state(state), encoding="utf-8")  # type: ignore[arg-type]
    os.replace(temporary, path)
