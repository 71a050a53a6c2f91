"""The shared asyncio mechanisms: single-flight (coalescing, batch de-duplication, key lookups, budget
seeding, health rounds), stopping background tasks, keeping fire-and-forget ones alive."""

from __future__ import annotations

import asyncio

import pytest

from proxy.infra.asyncutil import Background, SingleFlight, cancel_and_wait


async def test_single_flight_keep_answers_later_callers_from_the_finished_call() -> None:
    calls = 0

    async def work() -> int:
        nonlocal calls
        calls += 1
        return calls

    kept, plain = SingleFlight[int](keep=True), SingleFlight[int]()
    assert await kept.run("k", work) == (1, False)
    assert await kept.run("k", work) == (1, True) and "k" in kept  # one batch: the same answer again
    assert await plain.run("k", work) == (2, False)
    await asyncio.sleep(0)
    assert "k" not in plain and len(plain) == 0  # forgotten once it ended
    assert await plain.run("k", work) == (3, False)


async def test_single_flight_join_false_starts_anew_and_later_callers_join_the_new_call() -> None:
    flights, gate = SingleFlight[str](), asyncio.Event()

    async def work(tag: str) -> str:
        await gate.wait()
        return tag

    first = asyncio.ensure_future(flights.run("k", lambda: work("first")))
    await asyncio.sleep(0)
    fresh = asyncio.ensure_future(flights.run("k", lambda: work("fresh"), join=False))
    await asyncio.sleep(0)
    joined = asyncio.ensure_future(flights.run("k", lambda: work("never")))
    await asyncio.sleep(0)
    gate.set()
    assert await first == ("first", False)
    assert await fresh == ("fresh", False)
    assert await joined == ("fresh", True)


async def test_single_flight_without_cancel_orphans_finishes_the_call_when_everyone_left() -> None:
    flights, done = SingleFlight[str](cancel_orphans=False), asyncio.Event()

    async def work() -> str:
        await asyncio.sleep(0.01)
        done.set()
        return "finished"

    waiter = asyncio.ensure_future(flights.run("k", work))
    await asyncio.sleep(0)
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    task = flights.get("k")
    assert task is not None and await task == "finished" and done.is_set()


async def test_single_flight_start_shares_without_waiting_and_errors_reach_every_waiter() -> None:
    flights, calls = SingleFlight[None](cancel_orphans=False), 0

    async def boom() -> None:
        nonlocal calls
        calls += 1
        await asyncio.sleep(0)
        raise ValueError("no")

    task, shared = flights.start("k", boom)
    again, shared_again = flights.start("k", boom)
    assert again is task and (shared, shared_again) == (False, True)
    results = await asyncio.gather(flights.run("k", boom), flights.run("k", boom), return_exceptions=True)
    assert calls == 1 and all(isinstance(r, ValueError) for r in results)
    assert flights.get("k") is None and flights.get("other") is None


async def test_cancel_and_wait_stops_tasks_but_not_its_caller() -> None:
    stopped = asyncio.Event()

    async def forever() -> None:
        try:
            await asyncio.sleep(3600)
        finally:
            stopped.set()

    async def crashed() -> None:
        raise RuntimeError("died earlier")

    loop_task, dead = asyncio.ensure_future(forever()), asyncio.ensure_future(crashed())
    await asyncio.sleep(0)
    await cancel_and_wait(loop_task, None, dead)  # an earlier crash is not re-raised on shutdown
    assert loop_task.cancelled() and stopped.is_set()
    assert isinstance(dead.exception(), RuntimeError)

    # the caller being cancelled while it waits stays cancelled (suppress(CancelledError) would eat it)
    async def stubborn() -> None:
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            await asyncio.sleep(0.05)  # slow to stop
            raise

    slow = asyncio.ensure_future(stubborn())
    await asyncio.sleep(0)
    closer = asyncio.ensure_future(cancel_and_wait(slow))
    await asyncio.sleep(0.01)
    closer.cancel()
    with pytest.raises(asyncio.CancelledError):
        await closer
    await asyncio.wait([slow])
    assert slow.cancelled()


async def test_background_keeps_tasks_until_they_end_then_waits_or_cancels() -> None:
    bg, gate = Background(), asyncio.Event()
    quick = bg.spawn(gate.wait(), name="quick")
    slow = bg.spawn(asyncio.sleep(3600))
    assert len(bg) == 2 and isinstance(quick, asyncio.Task) and quick.get_name() == "quick"
    gate.set()
    await bg.wait(0.5)  # the quick one ends, the slow one is left running after the deadline
    assert quick.done() and not slow.done() and len(bg) == 1
    await bg.cancel()
    assert slow.cancelled() and len(bg) == 0
