"""The simulated Cohere API for the benchmark, in its own process (so it never shares a GIL with a competitor).

    python bench/server.py --models 200 --long-history 672 [--latency-ms 30] [--rate-limit 240]
    python bench/server.py --provider together --models 20000     # Together AI's jobs (bench/together.py)

Builds the world (20,000 models with natural histories: about 1 s and 80 MB), starts serving on 127.0.0.1 (a free
port), then prints one JSON line
``{"url": ..., "models": ..., "events": ...}`` and serves until killed.
"""

from __future__ import annotations

import argparse
import sys
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pipelines.providers.cohere.simulator import FakeApiServer, FakeCohereApi, Faults, World


class ListedWorld(World):
    """The simulated world with its model list kept between requests while the world stands still.

    ``World.model_list`` builds every model's body at the world's clock and sorts them on every list request: 0.36 s
    for 20,000 models, so 200 list pages would cost the server 70 s, all under its lock. The bench never moves the
    clock or edits a model, and the list is rebuilt if anything that shapes it changes.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._listed: tuple[Any, list[dict[str, Any]]] | None = None

    def model_list(self) -> list[dict[str, Any]]:
        with self.lock:
            key = (self.now, len(self.models), frozenset(self.hidden))
            if self._listed is None or self._listed[0] != key:
                self._listed = (key, super().model_list())
            return self._listed[1]

    def add_event(self, *args: Any, **kwargs: Any) -> Any:
        with self.lock:
            self._listed = None  # the model's status and updated_at may change
            return super().add_event(*args, **kwargs)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--models", type=int, required=True)
    parser.add_argument("--long-history", type=int, default=0, help="offline/ready spells per model (0: natural)")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--latency-ms", type=float, default=0.0)
    parser.add_argument("--rate-limit", type=int, default=0, help="server limit in requests per minute")
    parser.add_argument("--provider", default="cohere", choices=["cohere", "together", "openai"])
    args = parser.parse_args()
    if args.provider == "together":
        serve_together(args.models, args.seed, args.latency_ms)
        return
    if args.provider == "openai":
        serve_openai(args.models, args.seed, args.latency_ms, args.rate_limit)
        return
    world = ListedWorld(models=args.models, seed=args.seed, long_history=args.long_history)
    api = FakeCohereApi(world, latency_ms=args.latency_ms, faults=Faults(rate_limit_rpm=args.rate_limit))
    serve(FakeApiServer(api, compress=False), len(world.models), world.event_count())


def serve(server: FakeApiServer, models: int, events: int) -> None:
    """Start serving, print the one JSON line the benchmark reads, and serve until killed."""
    server.start()
    print(orjson.dumps({"url": server.url, "models": models, "events": events}).decode(), flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()


def serve_together(jobs: int, seed: int, latency_ms: float) -> None:
    """Together AI's simulated jobs API: ``jobs`` jobs over 90 days and one more (a ninety-first of them arrive as
    the clock moves on a day), some in flight; the clock moves only when ``/_simulator/advance`` is asked."""
    from pipelines.providers.together.simulator import FakeTogetherApi
    from pipelines.providers.together.simulator import World as Jobs

    world = Jobs(jobs=jobs, seed=seed, ahead=timedelta(days=1))
    serve(
        FakeApiServer(FakeTogetherApi(world, latency_ms=latency_ms), compress=False), world.size(), world.event_count()
    )


def serve_openai(jobs: int, seed: int, latency_ms: float, rate_limit: int) -> None:
    """OpenAI's simulated fine-tuning API: ``jobs`` jobs over 90 days and one more (a ninety-first of them arrive as
    the clock moves on a day), some in flight; the clock moves only when ``/_simulator/advance`` is asked."""
    from pipelines.providers.openai.simulator import FakeOpenAiApi
    from pipelines.providers.openai.simulator import World as Jobs

    world = Jobs(jobs=jobs, seed=seed, ahead=timedelta(days=1))
    api = FakeOpenAiApi(world, latency_ms=latency_ms, rate_limit=rate_limit)
    serve(FakeApiServer(api, compress=False), world.size(), world.event_count())


if __name__ == "__main__":
    main()
