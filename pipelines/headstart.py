"""A run's head start: the requests a run will surely make, sent while the rest of the program loads.

A run spends most of a second importing dlt and opening the warehouse before its first request; against an API with
latency, that second used to pass with nothing asked. ``run`` now begins, before it imports anything heavy, a head
start: a child process, forked then, in which the provider's client asks what the run will surely ask first (see each
client's ``head_start``: every page of the item list and, on a first load into a new warehouse, every item's events)
and passes each answer, as it came, through a pipe. A process, not a thread: the child's requests cost CPU that a
thread would take from the imports under the GIL; forked, it runs on another core and needs no imports of its own.

When the run's own clients begin (:func:`hand_over`, inside dlt's extraction), the child is told to send nothing
more, and says when it has stopped. A request of the run that the child already made takes its answer (waiting for
it if still on its way) and handles it as its own first attempt: a 429, a timeout or a malformed page is retried or
reported exactly as it would have been. Each answer is used at most once, and the limits hold across the two: the
requests in flight never exceed ``concurrency``, and under a rate limit the run's first request keeps its spacing
from the child's last. The summary's request count includes the child's, those the run did not use too.

A head start needs nothing that only dlt can resolve: it begins only on Linux (fork), when the key is in the
provider's own environment variable, the run lists every item (no ``--models``), the options are valid, and
``COHERE_EVENTS_HEAD_START`` is not ``0``. The child writes nothing but the pipe: its standard streams are
/dev/null, so no key or traceback of it ever reaches a log. It ends when told, or as soon as the run is gone.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import os
import pickle
import signal
import struct
import sys
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import httpx

from pipelines import config
from pipelines.config import LoadOptions
from pipelines.http import ApiClient, ClientSettings, RetryableError
from pipelines.loops import uvloop_factory
from pipelines.signals import STOPPING

SWITCH = "COHERE_EVENTS_HEAD_START"  # "0" turns head starts off
MAX_KEPT_BYTES = 32 * 2**20  # answers passed at most, in bytes of their bodies: a head start must not cost memory
STOP_WAIT_SECONDS = 5.0  # how long the run waits for the child to say it stopped before it kills it
Key = tuple[str, tuple[tuple[str, str], ...]]  # pipelines.http.page_marker of the whole URL
# what a request got: an answer, a timeout or connection failure, or None when it was cut short unanswered
Answer = httpx.Response | RetryableError | None
FRAME = struct.Struct("!I")
# how the body travelled, which the decoded body passed on no longer is (httpx would decode it again)
BODY_ENCODING = frozenset({"content-encoding", "content-length", "transfer-encoding"})


class Stopped(Exception):
    """The head start may send nothing more: the run took over, or it passed all it may."""


# --- the child: sends requests, passes what each got ----------------------------------------------------------------


class Pipe:
    """Framed pickles over a pipe (both ends are this program's own processes)."""

    def __init__(self, fd: int) -> None:
        self.fd = fd

    def send(self, *message: Any) -> None:
        data = pickle.dumps(message, protocol=5)
        view = memoryview(FRAME.pack(len(data)) + data)
        while view:
            view = view[os.write(self.fd, view) :]

    def receive(self) -> tuple[Any, ...] | None:
        """The next message; None at the end (the other process is gone)."""
        head = self.read_exactly(FRAME.size)
        if head is None:
            return None
        body = self.read_exactly(FRAME.unpack(head)[0])
        return None if body is None else pickle.loads(body)  # our own child's messages

    def read_exactly(self, size: int) -> bytes | None:
        chunks, left = [], size
        while left:
            chunk = os.read(self.fd, min(left, 1 << 20))
            if not chunk:
                return None
            chunks.append(chunk)
            left -= len(chunk)
        return b"".join(chunks)


class Recorder:
    """The child's side: tells the run of each request before it is sent, then what it got."""

    def __init__(self, pipe: Pipe, max_bytes: int = MAX_KEPT_BYTES) -> None:
        self.pipe = pipe
        self.max_bytes = max_bytes
        self.passed_bytes = 0
        self.stopped = False

    def claim(self, key: Key) -> Key:
        """Before a request is sent; Stopped when nothing more may be sent."""
        if self.stopped:
            raise Stopped
        self.pipe.send("sent", key, time.monotonic())
        return key

    def settle(self, key: Key, answer: Answer) -> None:
        """What a request got; anything but a 200 ends the head start: the run handles it, as its own."""
        if isinstance(answer, httpx.Response):
            self.passed_bytes += len(answer.content)
            self.stopped |= answer.status_code != 200 or self.passed_bytes >= self.max_bytes
            headers = [(name, value) for name, value in answer.headers.multi_items() if name not in BODY_ENCODING]
            self.pipe.send("answer", key, answer.status_code, headers, answer.content)
        elif isinstance(answer, RetryableError):
            self.stopped = True
            self.pipe.send("failed", key, str(answer), answer.retry_after)
        else:
            self.stopped = True
            self.pipe.send("cut", key)

    def stop(self) -> None:
        self.stopped = True
        self.pipe.send("stopped")


def child(
    client_kind: type[ApiClient], settings: ClientSettings, first_load: bool, metrics: bool, out: int, control: int
) -> None:
    """The head start's process: ask ahead until told to stop, then finish what is on its way."""
    null = os.open(os.devnull, os.O_RDWR)
    for stream in (0, 1, 2):
        os.dup2(null, stream)
    for name in STOPPING:
        signal.signal(name, signal.SIG_DFL)  # not the run's handlers: the child just ends
    recorder = Recorder(Pipe(out))

    async def ahead() -> None:
        loop = asyncio.get_running_loop()
        stop_asked = asyncio.Event()

        def told() -> None:
            if not os.read(control, 1):  # the run is gone: nothing it asked for matters any more
                os._exit(0)
            loop.remove_reader(control)
            recorder.stop()
            stop_asked.set()

        loop.add_reader(control, told)
        async with client_kind(settings) as api:
            api.recorder = recorder
            await api.head_start(first_load, metrics)
        await stop_asked.wait()  # all asked, or stopped: the run is told it stopped only when asked

    with contextlib.suppress(BaseException), asyncio.Runner(loop_factory=uvloop_factory()) as runner:
        runner.run(ahead())


# --- the run: receives, and hands over ------------------------------------------------------------------------------


@dataclass
class HeadStart:
    """The run's side of a head start: the child's requests and their answers, as they come. Thread-safe."""

    settings: ClientSettings
    pid: int
    control: int
    answers: dict[Key, concurrent.futures.Future[Answer]] = field(default_factory=dict)
    sent: int = 0
    in_flight: int = 0
    last_sent: float = 0.0  # time.monotonic() of the child's last request
    on_done: Callable[[], None] | None = None  # after the hand-over: one of the child's requests finished
    stopped: threading.Event = field(default_factory=threading.Event)  # the child sends nothing more
    lock: threading.Lock = field(default_factory=threading.Lock)

    def receive(self, pipe: Pipe) -> None:
        """The reader thread: take the child's messages until it is gone."""
        try:
            while (message := pipe.receive()) is not None:
                self.take_message(message)
        finally:
            self.stopped.set()
            with self.lock:
                unsettled = [future for future in self.answers.values() if not future.done()]
            for future in unsettled:  # the child died mid-request: the run asks itself
                self.settle(future, None)
            with contextlib.suppress(ChildProcessError):
                os.waitpid(self.pid, 0)

    def take_message(self, message: tuple[Any, ...]) -> None:
        kind, *rest = message
        if kind == "sent":
            key, at = rest
            with self.lock:
                self.answers[key] = concurrent.futures.Future()
                self.sent += 1
                self.in_flight += 1
                self.last_sent = at
        elif kind == "stopped":
            self.stopped.set()
        else:
            key = rest[0]
            if kind == "answer":
                status, headers, content = rest[1:]
                answer: Answer = httpx.Response(status, headers=headers, content=content)
            elif kind == "failed":
                answer = RetryableError(rest[1], rest[2])
            else:
                answer = None
            with self.lock:
                future = self.answers[key]
            self.settle(future, answer)

    def settle(self, future: concurrent.futures.Future[Answer], answer: Answer) -> None:
        with self.lock:
            self.in_flight -= 1
            done = self.on_done
        future.set_result(answer)
        if done is not None:
            done()

    def stop(self, on_done: Callable[[], None]) -> tuple[int, int, float]:
        """Tell the child to send nothing more and wait until it has stopped; returns (requests sent, requests still
        in flight, when the last was sent), and calls ``on_done`` as each of those in flight finishes."""
        with contextlib.suppress(OSError):
            os.write(self.control, b"s")
        if not self.stopped.wait(STOP_WAIT_SECONDS):
            with contextlib.suppress(OSError):
                os.kill(self.pid, signal.SIGKILL)  # its pipe then ends: what it had on its way is asked again
            self.stopped.wait(STOP_WAIT_SECONDS)
        with self.lock:
            self.on_done = on_done
            return self.sent, self.in_flight, self.last_sent


@dataclass
class Handover:
    """What the run's clients take from a head start: its answers, each once."""

    answers: dict[Key, concurrent.futures.Future[Answer]]
    sent: int  # requests the head start sent, for the run's count
    lock: threading.Lock = field(default_factory=threading.Lock)

    def take(self, key: Key) -> concurrent.futures.Future[Answer] | None:
        """The head start's request for ``key``, answered or on its way; None when it made none (or it was taken)."""
        with self.lock:
            return self.answers.pop(key, None)

    async def answer(self, future: concurrent.futures.Future[Answer]) -> httpx.Response | None:
        """The head start's answer, as the run's own first attempt: a failure raises as it would have; None when the
        request was cut short unanswered (the run then asks itself)."""
        answer = await asyncio.wrap_future(future)
        if isinstance(answer, RetryableError):
            raise RetryableError(str(answer), answer.retry_after)
        return answer


_current: HeadStart | None = None


def begin(client_kind: type[ApiClient], settings: ClientSettings, first_load: bool, metrics: bool) -> HeadStart | None:
    """Fork the head start's process; the next :func:`hand_over` in this process takes it. None where a fork is
    not safe: not Linux, or this process already runs threads."""
    global _current
    if sys.platform != "linux" or threading.active_count() > 1:
        return None
    try:
        answers_in, answers_out = os.pipe()
        control_in, control_out = os.pipe()
        pid = os.fork()
    except OSError:  # out of processes or memory: the run asks for everything itself
        return None
    if pid == 0:
        try:
            os.close(answers_in)
            os.close(control_out)
            child(client_kind, settings, first_load, metrics, answers_out, control_in)
        finally:
            os._exit(0)
    os.close(answers_out)
    os.close(control_in)
    head = HeadStart(settings, pid, control_out)
    threading.Thread(target=head.receive, args=(Pipe(answers_in),), name="head-start", daemon=True).start()
    _current = head
    return head


def abandon() -> None:
    """End this process's head start at once, unused (the run was stopped)."""
    global _current
    head, _current = _current, None
    if head is not None:
        with contextlib.suppress(OSError):
            os.kill(head.pid, signal.SIGKILL)


def begin_for_run(options: LoadOptions) -> HeadStart | None:
    """The head start of a ``run`` with these options, begun, when one may begin (see the module's docstring)."""
    if os.environ.get(SWITCH, "1").strip() == "0" or options.model_ids:
        return None
    try:
        options.check_values()
        chosen = config.provider(options.provider)
        api_key, base_url = config.environment_api_key(chosen.name), config.base_url(chosen.name)
    except config.ConfigError:
        return None  # the run says what is wrong, in one line
    if not api_key:
        return None
    settings = ClientSettings(
        base_url=base_url,
        api_key=api_key,
        page_size=options.page_size,
        concurrency=options.concurrency,
        requests_per_minute=options.requests_per_minute,
        timeout_seconds=options.timeout_seconds,
    )
    client_kind = chosen.module("client").CLIENT
    return begin(client_kind, settings, config.new_local_warehouse(options.destination), options.metrics)


def hand_over(settings: ClientSettings, on_done: Callable[[], None]) -> tuple[Handover | None, int, float]:
    """Stop this process's head start, if there is one, and take what it has: (its answers, or None when there was
    none; requests still in flight; when its last request was sent, 0 for never). Answers asked with another key or
    base URL than the run's are not used. ``on_done`` is called as each request still in flight finishes."""
    global _current
    head, _current = _current, None
    if head is None:
        return None, 0, 0.0
    sent, in_flight, last_sent = head.stop(on_done)
    same = (head.settings.base_url, head.settings.api_key) == (settings.base_url, settings.api_key)
    with head.lock:
        answers = dict(head.answers) if same else {}
    return Handover(answers, sent), in_flight, last_sent


async def whole(listing: Awaitable[list[dict[str, Any]]]) -> AsyncIterator[list[dict[str, Any]]]:
    """A listing read whole (the client pages it itself), as :func:`read_each` takes it: one page."""
    yield await listing


async def read_each(
    items: AsyncIterator[list[dict[str, Any]]], read: Callable[[dict[str, Any]], Awaitable[Any]], workers: int
) -> None:
    """List ``items`` page by page and ``read`` each, ``workers`` at a time (none: the listing alone), in the order
    listed, until the head start is stopped. A stop ends each task at its next request, never in the middle of one."""
    queue: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue()

    async def worker() -> None:
        with contextlib.suppress(Stopped):
            while (item := await queue.get()) is not None:
                await read(item)
        queue.put_nowait(None)  # for the other workers

    async def listing() -> None:
        try:
            with contextlib.suppress(Stopped):
                async for page in items:
                    for item in page:
                        queue.put_nowait(item)
        finally:
            queue.put_nowait(None)

    async with asyncio.TaskGroup() as group:
        group.create_task(listing())
        for _ in range(workers):
            group.create_task(worker())
