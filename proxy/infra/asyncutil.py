"""Small asyncio helpers shared by the stages and services: the project's one way to

* wait for an event with a deadline (`wait_event`),
* stop background tasks (`cancel_and_wait`) and keep fire-and-forget ones alive (`Background`),
* share one run of a call among concurrent callers asking for the same thing (`SingleFlight`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Hashable
from typing import Any, Generic, TypeVar

T = TypeVar("T")


async def wait_event(event: asyncio.Event, seconds: float) -> bool:
    """Wait for `event` at most `seconds`; True when it was set.

    Uses `asyncio.timeout` rather than `wait_for` inside `suppress(TimeoutError)`: on Python 3.11
    `wait_for` can turn a cancellation that races the timeout into a TimeoutError, and a background
    loop written that way then never ends on shutdown.
    """
    try:
        async with asyncio.timeout(seconds):
            await event.wait()
    except TimeoutError:
        return False
    return True


async def cancel_and_wait(*tasks: asyncio.Future[Any] | None) -> None:
    """Cancel the tasks still running (None is skipped) and wait until every one of them has ended.

    `asyncio.wait` rather than `await task` inside `suppress(CancelledError)`: that would also swallow a
    cancellation of the caller itself, and re-raise an error the task died of earlier; a stopped task's
    outcome is of no interest to whoever stops it.
    """
    running = [t for t in tasks if t is not None and not t.done()]
    for t in running:
        t.cancel()
    if running:
        await asyncio.wait(running)


class Background:
    """Fire-and-forget tasks with a strong reference (asyncio itself keeps only weak ones) until they end."""

    __slots__ = ("_tasks",)

    def __init__(self) -> None:
        self._tasks: set[asyncio.Future[Any]] = set()

    def __len__(self) -> int:
        return len(self._tasks)

    def spawn(self, work: Awaitable[T], name: str | None = None) -> asyncio.Future[T]:
        task = asyncio.ensure_future(work)
        if name is not None and isinstance(task, asyncio.Task):
            task.set_name(name)
        self.keep(task)
        return task

    def keep(self, task: asyncio.Future[Any]) -> None:
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def wait(self, seconds: float) -> None:
        """Let the running tasks finish, for at most `seconds` (a clean shutdown)."""
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=seconds)

    async def cancel(self) -> None:
        await cancel_and_wait(*self._tasks)


class _Call(Generic[T]):
    """One shared run. It is its task's done callback itself (no closure allocated per call)."""

    __slots__ = ("flights", "key", "task", "waiters")

    def __init__(self, flights: SingleFlight[T], key: Hashable, task: asyncio.Task[T]) -> None:
        self.flights = flights
        self.key = key
        self.task = task
        self.waiters = 0

    def __call__(self, _task: asyncio.Future[T]) -> None:
        self.flights.forget(self.key, self)


class SingleFlight(Generic[T]):
    """Single-flight: callers asking for the same key while a call for it runs share that one call.

    The call runs as its own task and callers wait through `asyncio.shield`, so a caller that leaves (a
    client hanging up) does not cancel it for the others. With `cancel_orphans` (the default) the call is
    cancelled when its last waiter leaves before it ended: nobody would read the answer. `keep=True` keeps
    finished calls too, so a later caller with the same key gets the same answer (for a short-lived scope
    such as one batch); otherwise a key is forgotten as soon as its call ends.
    """

    def __init__(self, *, cancel_orphans: bool = True, keep: bool = False) -> None:
        self._calls: dict[Hashable, _Call[T]] = {}
        self.cancel_orphans = cancel_orphans
        self.keep = keep

    def __len__(self) -> int:
        return len(self._calls)

    def __contains__(self, key: Hashable) -> bool:
        return key in self._calls

    def get(self, key: Hashable) -> asyncio.Task[T] | None:
        call = self._calls.get(key)
        return None if call is None else call.task

    async def run(self, key: Hashable, fn: Callable[[], Awaitable[T]], join: bool = True) -> tuple[T, bool]:
        """`fn()`'s result and whether it was shared with an earlier caller of the same key.

        join=False always starts a new call (e.g. Cache-Control: no-cache) but lets later callers join it.
        """
        call = self._calls.get(key) if join else None
        shared = call is not None
        if call is None:
            call = self._start(key, fn)
        call.waiters += 1
        try:
            return await asyncio.shield(call.task), shared
        finally:
            call.waiters -= 1
            if call.waiters == 0 and self.cancel_orphans and not call.task.done():
                self.forget(key, call)
                call.task.cancel()

    def start(self, key: Hashable, fn: Callable[[], Awaitable[T]]) -> tuple[asyncio.Task[T], bool]:
        """The call for `key`, started with `fn` unless one is known (then shared=True); nobody waits here."""
        call = self._calls.get(key)
        if call is not None:
            return call.task, True
        return self._start(key, fn).task, False

    def cancel_all(self) -> None:
        """Shutdown: stop calls that would otherwise outlive the event loop."""
        for call in list(self._calls.values()):
            call.task.cancel()
        self._calls.clear()

    def forget(self, key: Hashable, call: _Call[T]) -> None:
        if self._calls.get(key) is call:
            del self._calls[key]

    def _start(self, key: Hashable, fn: Callable[[], Awaitable[T]]) -> _Call[T]:
        call = _Call(self, key, asyncio.ensure_future(fn()))
        self._calls[key] = call
        if not self.keep:
            call.task.add_done_callback(call)
        return call
