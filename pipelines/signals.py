"""Signals: SIGTERM and SIGINT end a run on one line, with its lock released and nothing half-written committed."""

from __future__ import annotations

import logging
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

STOPPING = (signal.SIGTERM, signal.SIGINT)  # what stops a run


class Interrupted(KeyboardInterrupt):
    """SIGTERM or SIGINT stopped the run (a KeyboardInterrupt, so that dlt handles it as one)."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


@contextmanager
def stop_on_signals() -> Iterator[None]:
    """Turn SIGTERM and SIGINT into :class:`Interrupted` in the main thread, and quieten what dies with the run.

    Later signals are ignored, so the interrupted run can still release its lock and say one line. The async
    generators dlt was running in its own event loop thread cannot be closed cleanly then: asyncio would log
    "aclose(): asynchronous generator is already running" and "Task was destroyed" for each, until exit.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    stopped: list[int] = []

    def stop(signum: int, frame: object) -> None:
        for name in STOPPING:
            signal.signal(name, signal.SIG_IGN)
        logging.getLogger("asyncio").disabled = True
        sys.unraisablehook = lambda _: None
        stopped.append(signum)
        raise Interrupted(signum)

    previous: dict[int, Callable[..., Any] | int | None] = {name: signal.signal(name, stop) for name in STOPPING}
    try:
        yield
    finally:
        if not stopped:
            for name, handler in previous.items():
                signal.signal(name, handler)


@contextmanager
def held(on_signal: Callable[[], None] = lambda: None) -> Iterator[None]:
    """Hold SIGTERM and SIGINT until the block ends, then raise :class:`Interrupted` for the first that came.

    For the start of a run, while modules are imported: an exception raised inside an import leaves a module half
    made (a C extension's cannot be imported again), so the run ends once the imports are done, within a second.
    ``on_signal`` runs at once (the head start is stopped).
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    came: list[int] = []

    def hold(signum: int, frame: object) -> None:
        if not came:
            came.append(signum)
            on_signal()

    previous = {name: signal.signal(name, hold) for name in STOPPING}
    try:
        yield
    finally:
        for name, handler in previous.items():
            signal.signal(name, handler)
    if came:
        raise Interrupted(came[0])
