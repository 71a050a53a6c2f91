"""Shared HTTP transport: one pooled `aiohttp.ClientSession` per provider, driving any Translator."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import aiohttp
import orjson

from proxy.core.context import Native
from proxy.core.errors import TIMEOUT, UpstreamError
from proxy.infra.sse import BlockSSEParser, frames
from proxy.providers.base import (
    JSON,
    CallOptions,
    ChunkStream,
    Completion,
    Provider,
    StreamTranslator,
    Translator,
    UpstreamRequest,
)
from proxy.providers.settings import ProviderConfig


def connect_error(err: Exception) -> UpstreamError:
    return UpstreamError(502, f"cannot connect to upstream: {type(err).__name__}", kind="connect",
                         retryable=True, code="upstream_connect_error")


def timeout_error(what: str) -> UpstreamError:
    return UpstreamError(504, f"upstream timed out ({what})", kind="timeout", retryable=True,
                         type=TIMEOUT, code="upstream_timeout")


def bad_response(message: str) -> UpstreamError:
    return UpstreamError(502, f"upstream sent an invalid response: {message}", kind="bad_response",
                         retryable=True, code="upstream_bad_response")


def stream_cut(message: str) -> UpstreamError:
    return UpstreamError(502, f"upstream stream broke: {message}", kind="stream_cut", retryable=True,
                         code="upstream_stream_error")


class IdleWatch:
    """A stream's idle timeout (longest wait between two reads), as one timer per idle period.

    aiohttp's `sock_read` timer does the same by cancelling and re-creating a timer on every read, which
    measured ~12k instructions a streamed event. Here a read only stores the time (`last`); the timer, when
    it fires, either finds a read within the period and re-arms for the rest of it, or ends the stream:
    the body's reader gets the TimeoutError and the connection, its body unfinished, is not reused.
    `sock_read` (set per request) still bounds the wait for the response headers."""

    __slots__ = ("_idle", "_loop", "_resp", "_timer", "last", "time")

    def __init__(self, resp: aiohttp.ClientResponse, idle: float) -> None:
        self._resp, self._idle = resp, idle
        self._loop = asyncio.get_running_loop()
        self.time = self._loop.time
        self.last = self.time()
        if resp.connection is not None:
            resp.connection.protocol.read_timeout = None  # type: ignore[union-attr]
        self._timer: asyncio.TimerHandle | None = self._loop.call_at(self.last + idle, self._check)

    def _check(self) -> None:
        due = self.last + self._idle
        if self.time() < due:
            self._timer = self._loop.call_at(due, self._check)
            return
        self._timer = None
        self._resp.content.set_exception(TimeoutError("no stream data within the idle timeout"))

    def stop(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None


class HttpProvider(Provider):
    """Any HTTP upstream: the translator says what to send and how to read the answer."""

    idle_watch = IdleWatch  # translate_bench, which runs streams without an event loop, swaps it
    self_timed = True  # aiohttp's ClientTimeout(total=...) bounds every call

    def __init__(self, name: str, cfg: ProviderConfig, translator: Translator) -> None:
        super().__init__(name, cfg)
        self.translator = translator
        self.session: aiohttp.ClientSession | None = None

    async def start(self) -> None:
        # aiohttp's default connector caps at 100 connections; size it for thousands of streams.
        connector = aiohttp.TCPConnector(limit=self.cfg.max_connections, limit_per_host=0,
                                         ttl_dns_cache=300, keepalive_timeout=30)
        self.session = aiohttp.ClientSession(connector=connector, auto_decompress=True,
                                             skip_auto_headers=("User-Agent",), raise_for_status=False)

    async def close(self) -> None:
        if self.session is not None:
            await self.session.close()
            self.session = None

    async def _send(self, req: UpstreamRequest, opts: CallOptions) -> aiohttp.ClientResponse:
        if self.session is None:
            await self.start()
        assert self.session is not None
        headers = {**req.headers, **opts.extra_headers} if opts.extra_headers else req.headers
        try:
            # sock_read bounds the wait for the response headers (time to first token); once they are in,
            # the same per-read timer is switched to the idle timeout for the body. No extra asyncio timer.
            resp = await self.session.request(req.method, req.url, data=req.body, headers=headers,
                                              timeout=_client_timeout(opts))
        except TimeoutError:
            raise timeout_error("no response headers in time") from None
        except (aiohttp.ClientConnectorError, aiohttp.ServerDisconnectedError, ConnectionError) as err:
            raise connect_error(err) from None
        except aiohttp.ClientError as err:
            raise bad_response(type(err).__name__) from None
        if resp.status >= 400:
            try:
                data = await resp.read()
            except (aiohttp.ClientError, TimeoutError):
                data = b""
            finally:
                resp.release()
            raise self.translator.error(resp.status, resp.headers, data)
        return resp

    async def _read(self, resp: aiohttp.ClientResponse) -> bytes:
        try:
            return await resp.read()
        except TimeoutError:
            raise timeout_error("reading the response body") from None
        except aiohttp.ClientError as err:
            raise stream_cut(type(err).__name__) from None
        finally:
            resp.release()

    async def _complete(self, req: UpstreamRequest, opts: CallOptions, parse) -> Completion:  # type: ignore[no-untyped-def]
        resp = await self._send(req, opts)
        data = await self._read(resp)
        try:
            return parse(data)
        except UpstreamError:
            raise
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError, IndexError) as err:
            raise bad_response(f"{type(err).__name__}: {str(err)[:200]}") from None

    async def complete(self, body: JSON, model: str, opts: CallOptions) -> Completion:
        req = self.translator.chat_request(body, model, stream=False)
        return await self._complete(req, opts, lambda data: self.translator.chat_response(data, model))

    async def embed(self, body: JSON, model: str, opts: CallOptions) -> Completion:
        req = self.translator.embeddings_request(body, model)
        return await self._complete(req, opts,
                                    lambda data: self.translator.embeddings_response_for(body, data, model))

    @property
    def native_wires(self) -> frozenset[str]:  # type: ignore[override]
        return self.translator.native_wires

    async def complete_native(self, native: Native, model: str, opts: CallOptions) -> Completion:
        req = self.translator.native_request(native, model, stream=False)
        return await self._complete(req, opts, lambda data: self.translator.native_response(native.wire, data, model))

    async def stream_native(self, native: Native, model: str, opts: CallOptions) -> ChunkStream:
        req = self.translator.native_request(native, model, stream=True)
        return await self._stream(req, self.translator.native_stream(native.wire, native.body, model), opts)

    async def stream(self, body: JSON, model: str, opts: CallOptions) -> ChunkStream:
        req = self.translator.chat_request(body, model, stream=True)
        return await self._stream(req, self.translator.stream_translator(body, model), opts)

    async def _stream(self, req: UpstreamRequest, translator: StreamTranslator, opts: CallOptions) -> ChunkStream:
        resp = await self._send(req, opts)
        idle = self.idle_watch(resp, opts.idle_timeout)
        raw = resp.content.iter_any()
        events = self.translator.stream_events(raw)

        async def blocks() -> AsyncIterator[bytes]:
            try:
                if events is None:  # SSE parsed inline: one generator layer less per event
                    parser = BlockSSEParser()
                    async for data in raw:
                        idle.last = idle.time()
                        out, err = translate_read(data, parser, translator)
                        if out:
                            yield out
                        if err is not None:
                            raise err
                    out, err = translator.feed_all(parser.close())
                    if out:
                        yield out
                    if err is not None:
                        raise err
                else:
                    async for event, payload in events:
                        idle.last = idle.time()
                        if out := frames(translator.feed(event, payload)):
                            yield out
                if out := frames(translator.finish()):
                    yield out
            except TimeoutError:
                raise timeout_error("no stream data within the idle timeout") from None
            except (aiohttp.ClientError, ConnectionError) as err:
                raise stream_cut(type(err).__name__) from None
            except (orjson.JSONDecodeError, KeyError, TypeError, ValueError, IndexError) as err:
                raise bad_response(f"{type(err).__name__} in stream: {str(err)[:200]}") from None
            finally:
                idle.stop()
                resp.release()

        async def close() -> None:
            idle.stop()
            resp.close()

        return ChunkStream(blocks(), translator, close)

    async def probe(self) -> None:
        req = self.translator.probe_request()
        if req is None:
            return
        opts = CallOptions(connect_timeout=3, first_token_timeout=5, idle_timeout=5, total_timeout=5)
        resp = await self._send(req, opts)
        await self._read(resp)


_TIMEOUTS: dict[tuple[float, float, float], aiohttp.ClientTimeout] = {}


def _client_timeout(opts: CallOptions) -> aiohttp.ClientTimeout:
    """One immutable ClientTimeout per distinct setting, shared by every request."""
    key = (opts.total_timeout, opts.connect_timeout, opts.first_token_timeout)
    t = _TIMEOUTS.get(key)
    if t is None:
        t = _TIMEOUTS[key] = aiohttp.ClientTimeout(total=opts.total_timeout, sock_connect=opts.connect_timeout,
                                                   sock_read=opts.first_token_timeout)
    return t


def translate_read(data: bytes, parser: BlockSSEParser,
                   translator: StreamTranslator) -> tuple[bytes, Exception | None]:
    """One upstream read of an SSE stream -> the client's bytes for it (and an error raised after them)."""
    if translator.forwards_reads and parser.idle():
        done = translator.forward(data)
        if done is not None:
            return done
    return translator.feed_all(parser.feed(data))
