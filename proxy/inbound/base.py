"""The seam an inbound API implements: its request -> a chat completions body, the pipeline's answer (a
Completion, or a stream of `chat.completion.chunk` payloads) -> its own shape, GatewayErrors -> its error body.

No I/O here: proxy/http/inbound.py runs the pipeline and writes what these return.
"""

from __future__ import annotations

import abc
from typing import Any, ClassVar

import orjson

from proxy.core.context import Native, RequestContext
from proxy.core.errors import GatewayError
from proxy.core.usage import Usage
from proxy.infra.sse import BlockSSEParser
from proxy.providers.base import Completion, NativeStream

JSON = dict[str, Any]
_DELTA_CONTENT = b'"delta":{"content":'


def unsupported(err: Exception, into: list[Exception] | None) -> None:
    """Something the chat translation cannot carry (a hosted tool, an unknown field): raised, or kept in `into`
    when a deployment may take the API as is (the translation then leaves it out; see core.context.Native)."""
    if into is None:
        raise err
    into.append(err)


class TextSlot:
    """The bytes around the text of a text-delta chunk, learned from one read in full: a chunk made of the same
    bytes around one JSON string is that chunk with another text (the rest of it cannot differ). Lets a stream
    rewrite the common chunk (a text delta) without parsing more than its text."""

    __slots__ = ("lp", "ls", "prefix", "suffix")

    def __init__(self, prefix: bytes, suffix: bytes) -> None:
        self.prefix, self.suffix, self.lp, self.ls = prefix, suffix, len(prefix), len(suffix)

    @classmethod
    def learn(cls, payload: bytes, text: str) -> TextSlot | None:
        a = payload.find(_DELTA_CONTENT)
        if a < 0:
            return None
        a += len(_DELTA_CONTENT)
        literal = orjson.dumps(text)
        if payload[a:a + len(literal)] != literal:  # spaced or escaped otherwise than orjson does: no fast path
            return None
        return cls(payload[:a], payload[a + len(literal):])

    def text_of(self, payload: bytes) -> tuple[bytes, str] | None:
        """(the JSON string literal, its text) when `payload` is this slot's chunk with another text, else None
        (the caller parses the chunk in full)."""
        lp, ls = self.lp, self.ls
        if payload[:lp] != self.prefix or payload[len(payload) - ls:] != self.suffix:
            return None
        literal = payload[lp:len(payload) - ls]
        try:
            text = orjson.loads(literal)
        except orjson.JSONDecodeError:
            return None
        return (literal, text) if type(text) is str else None


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
    messages_field: ClassVar[str] = "messages"  # the request's list of turns (listen.limits.max_messages counts it)

    @abc.abstractmethod
    def chat_body(self, body: JSON, unsupported: list[Exception] | None = None) -> JSON:
        """Validate the client's request and translate it (a GatewayError 400 names what is wrong); with
        `unsupported`, what the translation cannot carry is collected there and left out."""

    def translate(self, ctx: RequestContext, body: JSON, native: bool = False) -> JSON:
        """`chat_body`, for an API that keeps something of the client's request on ctx (to echo it back).
        `native`: some deployment takes this API as is, so the request is kept for it (ctx.native) and what the
        translation cannot carry is left out of the chat body instead of refused (refused later if the request
        does not go to such a deployment)."""
        if not native:
            return self.chat_body(body)
        problems: list[Exception] = []
        chat = self.chat_body(body, problems)
        ctx.native = Native(self.kind, body, problems[0] if problems else None, self.native_headers(ctx))
        return chat

    def native_headers(self, ctx: RequestContext) -> dict[str, str] | None:
        """The client's headers a native forward passes on."""
        return None

    @abc.abstractmethod
    def response(self, ctx: RequestContext, completion: JSON) -> bytes:
        """A chat completion (as a dict) -> the client's JSON body."""

    @abc.abstractmethod
    def stream(self, ctx: RequestContext, body: JSON) -> InboundStream:
        """The state machine for one streamed answer."""

    @abc.abstractmethod
    def error(self, err: GatewayError) -> tuple[int, bytes]:
        """A GatewayError (OpenAI's shape) -> this API's status and error body."""

    # an upstream that speaks this API answers in it (Completion.wire / NativeStream.wire == kind)
    def native_response(self, ctx: RequestContext, completion: Completion) -> bytes:
        """The upstream's own answer -> the client's body (as it came, unless the API keeps state from it)."""
        return completion.body

    def native_end(self, ctx: RequestContext, stream: NativeStream) -> None:  # noqa: B027 - optional hook
        """A relayed stream ended normally (what it ended with is `stream.final`)."""
