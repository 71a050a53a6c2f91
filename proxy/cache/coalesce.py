"""Request coalescing (single-flight, per replica): identical requests in flight share one upstream call.

* `Flights.run(key, fn)` — non-stream: infra's `SingleFlight.run` (the first caller starts `fn` as its
  own task, callers arriving while it runs share it; a caller that disconnects does not cancel it for the
  others; when the *last* caller leaves, the call is cancelled: nobody would read the answer).
* `Flights.stream(key, open_stream)` — streams: a pump task reads the upstream stream into a shared
  buffer; each participant iterates the buffer with its own cursor and waits for more, so chunks fan
  out as they arrive and a participant that joins late first gets what it missed. Same rule: the pump
  stops only when every participant has left.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Hashable
from typing import Any

from proxy.infra.asyncutil import SingleFlight
from proxy.observability.logs import get_logger
from proxy.providers.base import ChunkStream, StreamTranslator, Usage
from proxy.providers.transport import stream_cut

log = get_logger("gateway.cache")
OpenStream = Callable[[], Awaitable[tuple[ChunkStream, bytes | None]]]


class _Relayed(StreamTranslator):
    """A participant's view of the shared stream: filled with what the upstream reported once it ends."""

    def __init__(self) -> None:
        super().__init__({}, "")

    def feed(self, event: str | None, data: bytes) -> list[bytes]:  # pragma: no cover - never fed
        return [data]


class StreamFlight:
    """One upstream stream shared by every participant."""

    def __init__(self, open_stream: OpenStream, on_complete: Callable[[StreamFlight], Awaitable[None]] | None,
                 forget: Callable[[StreamFlight], None]) -> None:
        self.first: bytes | None = None
        self.frames: list[bytes] = []  # SSE blocks after `first`
        self.done = False
        self.ok = False  # the upstream stream ended normally
        self.error: BaseException | None = None
        self.usage: Usage | None = None
        self.model = ""
        self.finish_reason: str | None = None
        self.participants = 0
        self.open_failed = False
        self.owner: Any = None  # the leader's request context (who pays, which provider answered)
        self._forget = forget
        self._opened = asyncio.Event()
        self._wake = asyncio.Event()
        self.task = asyncio.ensure_future(self._pump(open_stream, on_complete))

    async def _pump(self, open_stream: OpenStream,
                    on_complete: Callable[[StreamFlight], Awaitable[None]] | None) -> None:
        stream: ChunkStream | None = None
        try:
            try:
                stream, self.first = await open_stream()
            except BaseException:
                self.open_failed = True
                raise
            finally:
                self._opened.set()
            async for block in stream.frames:
                self.frames.append(block)
                self._notify()
            self.ok = True
            self._reported(stream)
            if on_complete is not None:
                # before `done`: a client that reads the end and asks again at once must find the entry
                try:
                    await on_complete(self)
                except Exception:
                    log.exception("storing a streamed answer failed")
        except asyncio.CancelledError:
            # participants still reading (only on shutdown) must see a broken stream, not a clean end
            self.error = stream_cut("the gateway stopped reading the upstream stream")
            if stream is not None:
                await _close(stream)
            raise
        except Exception as err:  # the upstream's error reaches every participant
            self.error = err
            if stream is not None:
                await _close(stream)
        finally:
            if stream is not None and not self.ok:
                self._reported(stream)
            self.done = True
            self._forget(self)
            self._notify()

    def _reported(self, stream: ChunkStream) -> None:
        self.usage, self.model, self.finish_reason = stream.usage, stream.model, stream.finish_reason

    def _notify(self) -> None:
        wake, self._wake = self._wake, asyncio.Event()
        wake.set()

    async def join(self, on_end: Callable[[StreamFlight], None] | None = None) -> tuple[ChunkStream, bytes | None]:
        """Wait until the upstream accepted the stream; then a ChunkStream over the shared chunks."""
        self.participants += 1
        try:
            await self._opened.wait()
        except asyncio.CancelledError:
            self._leave()
            raise
        if self.open_failed:
            self._leave()
            # not opened: every participant answers with an ordinary error response
            raise self.error or stream_cut("the upstream stream was not opened")
        translator = _Relayed()
        state = {"left": False}

        def leave() -> None:
            if not state["left"]:
                state["left"] = True
                self._leave()

        async def close() -> None:
            leave()

        return ChunkStream(self._iterate(translator, leave, on_end), translator, close), self.first

    async def _iterate(self, translator: _Relayed, leave: Callable[[], None],
                       on_end: Callable[[StreamFlight], None] | None) -> AsyncIterator[bytes]:
        i = 0
        try:
            while True:
                frames = self.frames
                while i < len(frames):
                    yield frames[i]
                    i += 1
                if self.done:
                    translator.usage, translator.model = self.usage, self.model
                    translator.finish_reason = self.finish_reason
                    if self.error is not None:
                        raise self.error
                    if on_end is not None:
                        on_end(self)
                    return
                await self._wake.wait()
        finally:
            leave()

    def _leave(self) -> None:
        self.participants -= 1
        if self.participants <= 0 and not self.task.done():
            # the last reader left: stop paying for tokens nobody will read
            self._forget(self)
            self.task.cancel()


class Flights(SingleFlight[Any]):
    """Non-stream calls (`run`, inherited) and shared streams, per key."""

    def __init__(self) -> None:
        super().__init__()
        self._streams: dict[Hashable, StreamFlight] = {}

    def __len__(self) -> int:
        return super().__len__() + len(self._streams)

    def stream(self, key: Hashable, open_stream: OpenStream,
               on_complete: Callable[[StreamFlight], Awaitable[None]] | None,
               join: bool = True) -> tuple[StreamFlight, bool]:
        """The flight to join for `key` (shared=True) or a new one started with `open_stream`."""
        flight = self._streams.get(key) if join else None
        if flight is not None and not flight.done:
            return flight, True

        def forget(f: StreamFlight) -> None:
            if self._streams.get(key) is f:
                del self._streams[key]

        flight = StreamFlight(open_stream, on_complete, forget)
        self._streams[key] = flight
        return flight, False

    def cancel_all(self) -> None:
        """Shutdown: stop calls and streams that would otherwise outlive the event loop."""
        super().cancel_all()
        for flight in list(self._streams.values()):
            flight.task.cancel()
        self._streams.clear()


async def _close(stream: ChunkStream) -> None:
    try:
        await stream.aclose()
        aclose = getattr(stream.frames, "aclose", None)
        if aclose is not None:
            await aclose()
    except Exception:
        pass
