"""Which event loops the package runs on: uvloop's (libuv, in C) where it is installed, else asyncio's (Windows).

Both the run's loops and the head start's child use these. This module imports nothing heavy, so the child, forked
before dlt is imported, can use it too.
"""

from __future__ import annotations

import asyncio
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager


def uvloop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop's loop maker for ``asyncio.Runner(loop_factory=...)``; None (asyncio's own) where uvloop is absent."""
    try:
        import uvloop
    except ImportError:  # Windows
        return None
    return uvloop.new_event_loop


@contextmanager
def uvloop_event_loops() -> Iterator[None]:
    """Event loops made meanwhile are uvloop's, where it is installed: dlt makes one to run the async resources, and
    the requests of a run spend less CPU in it (4.4 -> 4.2 s for 270k events on 2 cores)."""
    try:
        import uvloop
    except ImportError:  # Windows: asyncio's own loop
        yield
        return
    previous = set_event_loop_policy(uvloop.EventLoopPolicy())
    try:
        yield
    finally:
        set_event_loop_policy(previous)


def set_event_loop_policy(policy: asyncio.AbstractEventLoopPolicy) -> asyncio.AbstractEventLoopPolicy:
    """Set asyncio's event loop policy; returns the one it replaces. The policy API is deprecated from Python 3.14,
    but dlt makes its own loop, and the policy is the only say in which kind."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        previous = asyncio.get_event_loop_policy()
        asyncio.set_event_loop_policy(policy)
    return previous
