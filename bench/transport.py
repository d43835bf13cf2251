"""CPU per request of httpx's transport on anyio's sockets (httpx as it comes) against asyncio's (pipelines/network.py).

    uv run python bench/transport.py                  # 2,000 event pages a round, 5 rounds, each side in turn
    uv run python bench/transport.py --rounds 9 --requests 4000

The client is what a run sends through: small pools of httpx transports (pipelines.http.make_pool), 16 requests
at a time on uvloop, each answer read whole. The simulated API (bench/server.py: 200 models x 940 spells) runs in a
process of its own. Each round runs both sides, each in a fresh process, and prints the client's CPU milliseconds
a request; the last line is each side's median and the median of the rounds' ratios.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from run import API_KEY, CONCURRENCY, PAGE_SIZE, server

SIDES = ("anyio", "asyncio")


async def fetch(url: str, requests: int, side: str) -> float:
    """Send ``requests`` GETs of one model's first events page; returns the process's CPU seconds they took."""
    import httpx

    from pipelines.http import CONNECTIONS_PER_POOL, make_pool, tls_context

    pools = [make_pool(CONNECTIONS_PER_POOL, tls_context(), None) for _ in range(CONCURRENCY // CONNECTIONS_PER_POOL)]
    if side == "anyio":
        for pool in pools:
            pool._pool._network_backend = httpx.AsyncHTTPTransport()._pool._network_backend  # httpx's own
    headers = {"Authorization": f"Bearer {API_KEY}"}
    timeouts = {"timeout": httpx.Timeout(30.0, connect=10.0).as_dict()}  # a run's (ClientSettings)
    listing_url = f"{url}/v1/finetuning/finetuned-models"
    listing = await pools[0].handle_async_request(httpx.Request("GET", listing_url, headers=headers))
    model = json.loads(await listing.aread())["finetuned_models"][0]["id"]
    page = f"{url}/v1/finetuning/finetuned-models/{model}/events?page_size={PAGE_SIZE}&order_by=created_at%20desc"
    left = iter(range(requests))

    async def worker(pool: httpx.AsyncHTTPTransport) -> None:
        for _ in left:
            request = httpx.Request("GET", page, headers=headers, extensions=timeouts)
            response = await pool.handle_async_request(request)
            await response.aread()
            await response.aclose()

    started = time.process_time()
    await asyncio.gather(*(worker(pools[index % len(pools)]) for index in range(CONCURRENCY)))
    return time.process_time() - started


def one_side(url: str, requests: int, side: str) -> float:
    """CPU ms a request of one side, in a fresh process (uvloop, as a run)."""
    code = (
        "import sys, uvloop; sys.path.insert(0, sys.argv[1]); from transport import fetch; "
        "print(uvloop.run(fetch(sys.argv[2], int(sys.argv[3]), sys.argv[4])))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, str(Path(__file__).resolve().parent), url, str(requests), side],
        capture_output=True,
        text=True,
        check=True,
    )
    return 1000 * float(done.stdout.split()[-1]) / requests


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--requests", type=int, default=2000)
    args = parser.parse_args()
    ms: dict[str, list[float]] = {side: [] for side in SIDES}
    with server(200, 940) as api:
        for number in range(1, args.rounds + 1):
            for side in SIDES:
                ms[side].append(one_side(api.url, args.requests, side))
            print(f"round {number}: " + ", ".join(f"{side} {ms[side][-1]:.3f} ms" for side in SIDES), flush=True)
    ratios = [new / old for old, new in zip(ms["anyio"], ms["asyncio"], strict=True)]
    medians = ", ".join(f"{side} {statistics.median(ms[side]):.3f} ms" for side in SIDES)
    print(f"CPU a request, median of {args.rounds} rounds: {medians}; asyncio / anyio {statistics.median(ratios):.2f}")


if __name__ == "__main__":
    main()
