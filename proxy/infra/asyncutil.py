"""Small asyncio helpers shared by background tasks."""

from __future__ import annotations

import asyncio


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
