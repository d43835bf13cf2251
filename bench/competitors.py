"""The alternatives to ``cohere-events run``, each run by bench/run.py in a subprocess of its own:

    python bench/competitors.py bare|rest_api|sdk --url URL --page-size N [--concurrency N] [--workdir DIR]

- ``bare``: the practical limit: async httpx fetching the same pages with the same concurrency and the same
  transport-level calls as ours (small pools of httpx transports on asyncio's streams, pipelines/network.py, on
  uvloop), orjson parse, nothing stored.
- ``rest_api``: dlt's declarative ``rest_api`` source for the same two endpoints (cursor paginator on
  ``next_page_token``/``page_token``, a child resource per model), loaded into DuckDB as documented.
- ``sdk``: the script a user would write with the Cohere SDK: page models and events, build a pandas frame, reload
  the DuckDB tables in full.

Prints one JSON line: ``{"events": ..., "models": ..., "inner_seconds": ...}``. Wall time and peak memory are
measured from outside by bench/run.py.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from pathlib import Path
from typing import Any

import orjson

# Each competitor at its best, as if installed alone: httpx imports its optional command line (click, rich, pygments:
# about 50 ms) when they are installed, as they are here for ours (typer), and so would every competitor that imports
# httpx (bare, the SDK). Ours skips it too (pipelines/__init__.py).
sys.modules.setdefault("httpx._main", None)  # type: ignore[arg-type]

MODELS_PATH = "/v1/finetuning/finetuned-models"
API_KEY = "simulated-cohere-key"


async def bare(url: str, page_size: int, concurrency: int) -> dict[str, Any]:
    import httpx

    from pipelines.network import on_asyncio_network

    # Small pools sent to through httpx's transport, as pipelines/http.py does: httpx's per-request cost grows
    # with the connections in a pool, and its AsyncClient layer adds cookies, URL merging and hooks. Their sockets
    # are asyncio's streams, as ours are, not anyio's.
    limits = httpx.Limits(max_connections=2, max_keepalive_connections=None)
    headers = httpx.Headers({"Authorization": f"Bearer {API_KEY}"})
    extensions = {"timeout": httpx.Timeout(60).as_dict()}
    gate = asyncio.Semaphore(concurrency)
    pools = [httpx.AsyncHTTPTransport(limits=limits) for _ in range(-(-concurrency // 2))]
    for pool in pools:
        on_asyncio_network(pool)
    busy = [0] * len(pools)
    try:

        async def pages(path: str, key: str, order: str) -> Any:
            token = None
            while True:
                params: dict[str, Any] = {"page_size": page_size, "order_by": order}
                if token:
                    params["page_token"] = token
                request = httpx.Request("GET", url + path, params=params, headers=headers, extensions=extensions)
                async with gate:
                    pool = min(range(len(pools)), key=busy.__getitem__)
                    busy[pool] += 1
                    try:
                        response = await pools[pool].handle_async_request(request)
                        await response.aread()
                        await response.aclose()
                    finally:
                        busy[pool] -= 1
                if response.status_code != 200:
                    raise RuntimeError(f"HTTP {response.status_code} for {path}")
                body = orjson.loads(response.content)
                yield body.get(key, [])
                token = body.get("next_page_token")
                if not token:
                    return

        ids = [m["id"] async for page in pages(MODELS_PATH, "finetuned_models", "created_at") for m in page]

        async def events_of(model_id: str) -> int:
            count = 0
            async for page in pages(f"{MODELS_PATH}/{model_id}/events", "events", "created_at desc"):
                count += len(page)
            return count

        counts = await asyncio.gather(*(events_of(model_id) for model_id in ids))
    finally:
        for pool in pools:
            await pool.aclose()
    return {"models": len(ids), "events": sum(counts)}


def rest_api(url: str, page_size: int, workdir: Path) -> dict[str, Any]:
    import dlt
    from dlt.sources.rest_api import rest_api_source

    source = rest_api_source(
        {
            "client": {
                "base_url": url,
                "auth": {"type": "bearer", "token": API_KEY},
                "paginator": {"type": "cursor", "cursor_path": "next_page_token", "cursor_param": "page_token"},
            },
            "resource_defaults": {"endpoint": {"params": {"page_size": page_size}}},
            "resources": [
                {
                    "name": "finetuned_models",
                    "endpoint": {
                        "path": MODELS_PATH.lstrip("/"),
                        "data_selector": "finetuned_models",
                        "params": {"order_by": "created_at"},
                    },
                    "primary_key": "id",
                    "write_disposition": "merge",
                },
                {
                    "name": "events",
                    "endpoint": {
                        "path": MODELS_PATH.lstrip("/") + "/{resources.finetuned_models.id}/events",
                        "data_selector": "events",
                        "params": {"order_by": "created_at desc"},
                    },
                    "include_from_parent": ["id"],
                    "write_disposition": "replace",  # no per-model cursor: every run reloads everything
                },
            ],
        },
        name="cohere_rest_api",
    )
    pipeline = dlt.pipeline(
        pipeline_name="cohere_rest_api",
        destination=dlt.destinations.duckdb(str(workdir / "rest_api.duckdb")),
        dataset_name="cohere_finetuning",
        pipelines_dir=str(workdir / ".dlt-pipelines"),
    )
    pipeline.run(source)
    with pipeline.sql_client() as client:
        events = client.execute_sql("select count(*) from events") or [[0]]
        models = client.execute_sql("select count(*) from finetuned_models") or [[0]]
    return {"models": int(models[0][0]), "events": int(events[0][0])}


def sdk(url: str, page_size: int, workdir: Path) -> dict[str, Any]:
    import cohere
    import duckdb
    import pandas as pd

    co = cohere.Client(base_url=url, api_key=API_KEY)
    models: list[dict[str, Any]] = []
    token = None
    while True:
        page = co.finetuning.list_finetuned_models(page_size=page_size, page_token=token, order_by="created_at")
        models.extend(m.dict() for m in page.finetuned_models or [])
        token = page.next_page_token
        if not token:
            break
    rows: list[dict[str, Any]] = []
    for model in models:
        token = None
        while True:
            events = co.finetuning.list_events(
                model["id"], page_size=page_size, page_token=token, order_by="created_at desc"
            )
            for event in events.events or []:
                rows.append(
                    {
                        "finetuned_model_id": model["id"],
                        "user_id": event.user_id,
                        "status": event.status,
                        "created_at": event.created_at,
                    }
                )
            token = events.next_page_token
            if not token:
                break
    frame = pd.DataFrame(rows, columns=["finetuned_model_id", "user_id", "status", "created_at"])
    model_frame = pd.json_normalize(models, sep="__")
    with duckdb.connect(str(workdir / "sdk.duckdb")) as db:
        db.register("events_frame", frame)
        db.register("models_frame", model_frame)
        db.execute("create or replace table events as select * from events_frame")
        db.execute("create or replace table finetuned_models as select * from models_frame")
        events_loaded = db.execute("select count(*) from events").fetchone()[0]  # type: ignore[index]
    return {"models": len(models), "events": int(events_loaded)}


def event_loop_run(work: Any) -> Any:
    """Run a coroutine on the event loop ours runs on (pipelines/loops.py: uvloop's where installed)."""
    from pipelines.loops import uvloop_factory

    with asyncio.Runner(loop_factory=uvloop_factory()) as runner:
        return runner.run(work)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("competitor", choices=["bare", "rest_api", "sdk"])
    parser.add_argument("--url", required=True)
    parser.add_argument("--page-size", type=int, required=True)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--workdir", type=Path, default=Path.cwd())
    args = parser.parse_args()
    args.workdir.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("RUNTIME__LOG_LEVEL", "WARNING")
    started = time.perf_counter()
    if args.competitor == "bare":
        result = event_loop_run(bare(args.url, args.page_size, args.concurrency))
    elif args.competitor == "rest_api":
        result = rest_api(args.url, args.page_size, args.workdir)
    else:
        result = sdk(args.url, args.page_size, args.workdir)
    result["inner_seconds"] = round(time.perf_counter() - started, 3)
    print(orjson.dumps(result).decode(), flush=True)


if __name__ == "__main__":
    main()
