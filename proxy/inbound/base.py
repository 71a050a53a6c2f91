"""The seam an inbound API implements: its request -> a chat completions body, the pipeline's answer (a
Completion, or a stream of `chat.completion.chunk` payloads) -> its own shape, GatewayErrors -> its error body.

No I/O here: proxy/http/inbound.py runs the pipeline and writes what these return.
"""

from __future__ import annotations

import abc
from typing import Any, ClassVar

from proxy.core.context import RequestContext
from proxy.core.errors import GatewayError
from proxy.core.usage import Usage
from proxy.infra.sse import BlockSSEParser

JSON = dict[str, Any]


class InboundStream(abc.ABC):
    """Per-request state machine: the pipeline's chunk payloads (OpenAI `chat.completion.chunk` JSON) -> the
    client's stream bytes, framed."""

    def __init__(self) -> None:
        self._parser = BlockSSEParser()
        self._idle = True  # nothing buffered in the parser: the next block starts an event

    @abc.abstractmethod
    def feed(self, payload: bytes) -> bytes:
        """One chunk payload -> the client's bytes for it (b"" when it adds nothing)."""

    @abc.abstractmethod
    def end(self, usage: Usage | None) -> bytes:
        """The client's bytes after the last chunk (the stream ended normally)."""

    @abc.abstractmethod
    def error(self, err: GatewayError) -> bytes:
        """The event that ends a stream which broke after it started."""

    def feed_frames(self, block: bytes) -> bytes:
        """What the pipeline's ChunkStream yields (one or more `data: <payload>` events) -> the client's bytes."""
        lfs = block.count(b"\n")
        if block.startswith(b"data: ") and self._idle:
            # one-line events, as providers frame them (sse.frames): cut at the separators, no SSE parser
            if lfs == 2 and block.endswith(b"\n\n"):  # one event: the common read
                payload = block[6:-2]
                return self.feed(payload) if payload != b"[DONE]" else b""
            payloads = block[6:-2].split(b"\n\ndata: ")
            if 2 * len(payloads) == lfs and block.endswith(b"\n\n"):  # every LF is one of a separator's
                return b"".join([self.feed(p) for p in payloads if p != b"[DONE]"])
        out = [self.feed(payload) for _event, payload in self._parser.feed(block) if payload != b"[DONE]"]
        self._idle = self._parser.idle()
        return out[0] if len(out) == 1 else b"".join(out)


class InboundAPI(abc.ABC):
    """One inbound wire format. `kind` labels the in-flight gauge (ledger rows and metrics say `chat`: the
    call is a chat completion to every stage)."""

    kind: ClassVar[str]

    @abc.abstractmethod
    def chat_body(self, body: JSON) -> JSON:
        """Validate the client's request and translate it (a GatewayError 400 names what is wrong)."""

    @abc.abstractmethod
    def response(self, ctx: RequestContext, completion: JSON) -> bytes:
        """A chat completion (as a dict) -> the client's JSON body."""

    @abc.abstractmethod
    def stream(self, ctx: RequestContext, body: JSON) -> InboundStream:
        """The state machine for one streamed answer."""

    @abc.abstractmethod
    def error(self, err: GatewayError) -> tuple[int, bytes]:
        """A GatewayError (OpenAI's shape) -> this API's status and error body."""
