"""The provider seam.

Two layers, as in Envoy AI Gateway's translator:

* `Translator` — pure functions, one small subclass per wire format: OpenAI request body in ->
  upstream HTTP request out; upstream response / stream event / error -> OpenAI shapes back, with
  the token usage and the model that answered. No I/O here, so it is tested with golden fixtures.
* `Provider` — the runtime object the resilience stage calls (`complete`, `stream`, `embed`,
  `probe`). `HttpProvider` (transport.py) pairs any Translator with one shared
  `aiohttp.ClientSession`; in-process providers (mock, cli) implement `Provider` directly.
"""

from __future__ import annotations

import abc
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

from proxy.core.context import Native
from proxy.core.errors import GatewayError, UpstreamError, upstream_error_from_status
from proxy.core.usage import Usage
from proxy.infra.sse import BlockSSEParser, SSEParser, frames
from proxy.providers.settings import ProviderConfig

JSON = dict[str, Any]


@dataclass(slots=True)
class UpstreamRequest:
    method: str
    url: str
    headers: dict[str, str]
    body: bytes | None = None


@dataclass(slots=True)
class Completion:
    """A complete (non-stream) answer in OpenAI shape.

    `body` is the serialised JSON sent to the client; `data` the same as a dict when a stage needs
    to read it (cache, batch). Pass-through providers fill `body` with the upstream's bytes as is.
    """

    body: bytes
    usage: Usage
    model: str
    finish_reason: str | None = None
    data: JSON | None = None
    wire: str = "chat"  # the API `body` speaks: chat, or an inbound API's own (a native answer)


class StreamTranslator(abc.ABC):
    """Per-request state machine: upstream stream events -> OpenAI `chat.completion.chunk` payloads.

    `feed` returns serialised chunk JSON (without the `data: ` framing); a pass-through translator
    returns the upstream bytes unchanged. After the stream ends, `usage`, `model` and
    `finish_reason` hold what the upstream reported.
    """

    def __init__(self, request_body: JSON, model: str) -> None:
        self.model: str = model
        self.usage: Usage | None = None
        self.finish_reason: str | None = None
        self.include_usage = bool((request_body.get("stream_options") or {}).get("include_usage"))

    @abc.abstractmethod
    def feed(self, event: str | None, data: bytes) -> list[bytes]:
        """One upstream event (SSE `event:` name or event-stream type, and its data) -> chunks."""

    def finish(self) -> list[bytes]:
        """Chunks to emit after the upstream stream ended normally (e.g. a usage chunk)."""
        return []

    def feed_all(self, events: Iterable[tuple[str | None, bytes]]) -> tuple[bytes, Exception | None]:
        """Several events (one upstream read's) -> the client's SSE bytes for them. An error is returned, not
        raised, after the chunks of the events before it: the caller sends those first, then fails."""
        out: list[bytes] = []
        try:
            for event, payload in events:
                out += self.feed(event, payload)
        except Exception as err:
            return frames(out), err
        return frames(out), None

    # A pass-through translator may take whole upstream reads of SSE bytes (`forward`) instead of one
    # event at a time: most of a stream's events then leave as they came, with no per-event Python.
    forwards_reads: ClassVar[bool] = False

    def forward(self, data: bytes) -> tuple[bytes, Exception | None] | None:
        """One upstream read that starts at an event boundary -> (the client's SSE bytes for it, an error
        raised after them or None); None when it must be parsed event by event instead."""
        return None


class NativeStream(StreamTranslator):
    """A stream in an inbound API's own wire format (Responses, Messages), relayed as the upstream sent it.

    Each read leaves as it came (`forward`); its events are only cut apart to read the few that carry usage, the
    answering model and the end. An upstream error event is relayed too, then raised with `delivered` set: the
    client has its error, the gateway still meters the call as failed."""

    wire: ClassVar[str]
    forwards_reads = True
    # bytes only the events `read` must see hold (their `type`s): a read of whole events without any of them
    # (the content deltas) is relayed without being cut apart
    markers: ClassVar[tuple[bytes, ...]]

    def __init__(self, request_body: JSON, model: str) -> None:
        super().__init__(request_body, model)
        self._events = BlockSSEParser()
        self.final: JSON | None = None  # the answer object the stream ended with (a Response), when it has one
        self.events = 0  # events relayed so far

    def forward(self, data: bytes) -> tuple[bytes, Exception | None] | None:
        if not (data.endswith(b"\n\n") and self._events.idle() and 13 not in data):
            try:  # a read that cuts an event, or CRLF framing: the SSE parser
                for event, payload in self._events.feed(data):
                    self.feed(event, payload)
            except UpstreamError as err:
                return data, err
            return data, None
        # whole LF-framed events: count them, and cut out only those holding a marker (a few per stream)
        self.events += data.count(b"\n\n")
        hits = sorted(i for marker in self.markers for i in _all(data, marker))
        last = -1
        try:
            for i in hits:
                if i < last:
                    continue  # in the event just read
                start = data.rfind(b"\n\n", 0, i) + 2  # 1 when the read's first event holds it
                last = data.index(b"\n\n", i)
                for event, payload in SSEParser().feed(data[start if start > 1 else 0:last + 2]):
                    self.read(event, payload)
        except UpstreamError as err:
            return data, err
        return data, None

    def feed(self, event: str | None, data: bytes) -> list[bytes]:
        self.events += 1
        for marker in self.markers:
            if marker in data:
                self.read(event, data)
                break
        return []

    @abc.abstractmethod
    def read(self, event: str | None, data: bytes) -> None:
        """Note what one event says (usage, model, the end); raise a delivered UpstreamError for an error event."""

    @abc.abstractmethod
    def error_events(self, err: GatewayError) -> bytes:
        """The events that end this stream with `err` in its wire format (the upstream broke off mid-way)."""


def _all(data: bytes, marker: bytes) -> list[int]:
    """Where `marker` occurs in `data`."""
    out, i = [], data.find(marker)
    while i >= 0:
        out.append(i)
        i = data.find(marker, i + len(marker))
    return out


def delivered(err: UpstreamError) -> UpstreamError:
    """An error the client already got from the upstream's own stream: nothing more is written for it."""
    err.delivered = True
    return err


class RecordedStream(StreamTranslator):
    """For providers that produce the client's chunks themselves (mock, cli): only carries what was reported."""

    def feed(self, event: str | None, data: bytes) -> list[bytes]:  # pragma: no cover - unused
        return [data]


def no_embeddings(name: str, type_: str) -> UpstreamError:
    return UpstreamError(400, f"provider {name!r} ({type_}) does not offer embeddings", kind="bad_request",
                         retryable=False, type="invalid_request_error", code="embeddings_not_supported")


class Translator:
    """Pure translation for one wire format. Subclasses override what differs from OpenAI's."""

    def __init__(self, name: str, cfg: ProviderConfig) -> None:
        self.name = name
        self.cfg = cfg

    # --- requests
    def chat_request(self, body: JSON, model: str, stream: bool) -> UpstreamRequest:
        raise NotImplementedError

    def embeddings_request(self, body: JSON, model: str) -> UpstreamRequest:
        raise no_embeddings(self.name, self.cfg.type)

    def probe_request(self) -> UpstreamRequest | None:
        return None

    # --- responses
    def chat_response(self, data: bytes, model: str) -> Completion:
        raise NotImplementedError

    def stream_translator(self, body: JSON, model: str) -> StreamTranslator:
        raise NotImplementedError

    def stream_events(self, reads: AsyncIterator[bytes]) -> AsyncIterator[tuple[str | None, bytes]] | None:
        """The upstream stream's events, for a framing other than SSE (Bedrock's binary event stream);
        None (the default) for SSE, which the transport parses inline."""
        return None

    def embeddings_response(self, data: bytes, model: str) -> Completion:
        raise NotImplementedError

    def embeddings_response_for(self, body: JSON, data: bytes, model: str) -> Completion:
        """`embeddings_response` with the client's request at hand (usage estimates, encoding_format)."""
        return self.embeddings_response(data, model)

    # --- native: an inbound API forwarded as is, where the upstream speaks it (`native_wires`)
    native_wires: frozenset[str] = frozenset()

    def native_request(self, native: Native, model: str, stream: bool) -> UpstreamRequest:
        raise NotImplementedError

    def native_response(self, wire: str, data: bytes, model: str) -> Completion:
        raise NotImplementedError

    def native_stream(self, wire: str, body: JSON, model: str) -> NativeStream:
        raise NotImplementedError

    def error(self, status: int, headers: Mapping[str, str], data: bytes) -> UpstreamError:
        """Upstream error status + body -> the OpenAI-format error the client sees."""
        return upstream_error_from_status(status, data[:500].decode("utf-8", "replace"),
                                          retry_after=parse_retry_after(headers))


def parse_retry_after(headers: Mapping[str, str]) -> float | None:
    value = headers.get("retry-after") or headers.get("Retry-After")
    if value is None:
        ms = headers.get("retry-after-ms")
        try:
            return float(ms) / 1000 if ms is not None else None
        except ValueError:
            return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None  # an HTTP date: treat as unknown


@dataclass(slots=True)
class ChunkStream:
    """What `Provider.stream` returns: the client's SSE bytes plus, once drained, what was reported.

    Each item of `frames` is one or more whole `data: <chunk>\n\n` events, ready to write: what one
    upstream read gave (so chunks that arrived together leave in one write), never empty.
    """

    frames: AsyncIterator[bytes]
    translator: StreamTranslator
    close: Any = None  # async callable releasing the upstream connection

    @property
    def usage(self) -> Usage | None:
        return self.translator.usage

    @property
    def model(self) -> str:
        return self.translator.model

    @property
    def finish_reason(self) -> str | None:
        return self.translator.finish_reason

    async def aclose(self) -> None:
        if self.close is not None:
            await self.close()


@dataclass(slots=True)
class CallOptions:
    """Per-attempt knobs from the alias (timeouts) and the request (trace headers)."""

    connect_timeout: float = 10.0
    first_token_timeout: float = 120.0
    idle_timeout: float = 120.0
    total_timeout: float = 600.0
    extra_headers: dict[str, str] = field(default_factory=dict)


class Provider(abc.ABC):
    """A configured upstream account, as the resilience stage sees it."""

    # True when the provider enforces CallOptions.total_timeout itself (the HTTP transport does), so
    # the executor need not wrap each call in a timeout of its own
    self_timed: bool = False

    def __init__(self, name: str, cfg: ProviderConfig) -> None:
        self.name = name
        self.cfg = cfg

    @property
    def type(self) -> str:
        return self.cfg.type

    async def start(self) -> None:  # noqa: B027 - optional hook
        """Open sessions / pools. Called once at app startup."""

    async def close(self) -> None:  # noqa: B027 - optional hook
        """Release sessions / pools. Called once at shutdown."""

    @abc.abstractmethod
    async def complete(self, body: JSON, model: str, opts: CallOptions) -> Completion: ...

    @abc.abstractmethod
    async def stream(self, body: JSON, model: str, opts: CallOptions) -> ChunkStream:
        """Open the stream; return once the upstream accepted it (status 2xx). Errors raise UpstreamError."""

    async def embed(self, body: JSON, model: str, opts: CallOptions) -> Completion:
        raise no_embeddings(self.name, self.type)

    # inbound APIs this upstream takes as is (Native.wire); the executor sends those there untranslated
    native_wires: frozenset[str] = frozenset()

    async def complete_native(self, native: Native, model: str, opts: CallOptions) -> Completion:
        raise NotImplementedError

    async def stream_native(self, native: Native, model: str, opts: CallOptions) -> ChunkStream:
        raise NotImplementedError

    async def probe(self) -> None:  # noqa: B027 - default: nothing cheap to ask, assume healthy
        """A cheap health check; raise UpstreamError when unhealthy."""


# how the stages around the provider call hold it: the cache and coalescing run these at most once
Complete = Callable[[], Awaitable[Completion]]
OpenStream = Callable[[], Awaitable[tuple[ChunkStream, bytes | None]]]
