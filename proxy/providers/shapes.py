"""OpenAI response shapes built from scratch, for translators whose upstream speaks something else.

Pass-through translators forward upstream bytes; these helpers serve the ones that must produce
`chat.completion`, `chat.completion.chunk` and embeddings objects themselves (bedrock, cli, and the
per-chunk fast path of the Anthropic and Gemini stream translators: `content_chunk_head`, `TextSlot`).
"""

from __future__ import annotations

import base64
import struct
import time
import uuid
from collections.abc import Callable, Iterable
from typing import Any

import orjson

from proxy.infra.sse import BlockSSEParser
from proxy.providers.base import JSON, Usage


def completion_id() -> str:
    return "chatcmpl-" + uuid.uuid4().hex[:24]


def chat_completion(cid: str, model: str, message: JSON, finish_reason: str | None, usage: Usage,
                    created: int | None = None) -> JSON:
    return {
        "id": cid,
        "object": "chat.completion",
        "created": int(time.time()) if created is None else created,
        "model": model,
        "choices": [{"index": 0, "message": message, "logprobs": None, "finish_reason": finish_reason}],
        "usage": usage.to_openai(),
    }


def assistant_message(text: str, tool_calls: list[JSON] | None = None) -> JSON:
    # OpenAI sends `content: null` when the turn is only tool calls
    msg: JSON = {"role": "assistant", "content": text if (text or not tool_calls) else None, "refusal": None}
    if tool_calls:
        msg["tool_calls"] = tool_calls
    return msg


def chunk(cid: str, created: int, model: str, delta: JSON, finish_reason: str | None = None) -> JSON:
    return {
        "id": cid, "object": "chat.completion.chunk", "created": created, "model": model,
        "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}],
    }


def usage_chunk(cid: str, created: int, model: str, usage: Usage) -> JSON:
    """The extra last chunk OpenAI sends with `stream_options.include_usage`: no choices, only usage."""
    return {"id": cid, "object": "chat.completion.chunk", "created": created, "model": model,
            "choices": [], "usage": usage.to_openai()}


# ---------------------------------------------------------------- stream fast path
CONTENT_CHUNK_TAIL = b'},"logprobs":null,"finish_reason":null}]}'


def content_chunk_head(head: JSON, index: int = 0) -> bytes:
    """The bytes of a content-delta chunk up to its text: `head + orjson.dumps(text) + CONTENT_CHUNK_TAIL` is
    byte for byte `orjson.dumps({**head, "choices": [{"index": index, "delta": {"content": text}, "logprobs":
    None, "finish_reason": None}]})`, for the cost of serialising the text alone."""
    whole = orjson.dumps({**head, "choices": [{"index": index, "delta": {"content": ""}, "logprobs": None,
                                               "finish_reason": None}]})
    end = len(whole) - len(CONTENT_CHUNK_TAIL) - 2
    assert whole[end:] == b'""' + CONTENT_CHUNK_TAIL
    return whole[:end]


_CONTROL = bytes(range(32))


def text_run(texts: list[bytes], chunk_head: Callable[[], bytes]) -> bytes | None:
    """JSON string literals cut from a run of upstream text events (each `"..."`), as the client's content
    chunks: one join puts the chunk tail and the next chunk's head between them, so no event is parsed or
    built on its own. Only literals that are also what `orjson.dumps` gives for their text qualify (no
    backslash, quote or control character inside, valid UTF-8); None otherwise, and the caller reads the
    events one by one. `chunk_head()` is only asked for once the run qualifies: a translator may update its
    state there, as its first event of the run would."""
    k = len(texts)
    joined = b"\n".join(texts)  # LF: no valid literal holds one, so it marks where each one starts and ends
    if (joined[0] != 34 or joined[-1] != 34 or joined.count(b'"\n"') != k - 1 or joined.count(b'"') != 2 * k
            or b'""' in joined or 92 in joined or len(joined) - len(joined.translate(None, _CONTROL)) != k - 1):
        return None
    if not joined.isascii():
        try:
            joined.decode()
        except UnicodeDecodeError:
            return None
    head = chunk_head()
    tail = CONTENT_CHUNK_TAIL + b"\n\n"
    return b"data: " + head + (tail + b"data: " + head).join(texts) + tail


class TextRuns:
    """Whole upstream reads for a translator with a learned `TextSlot` (`_slot`): each run of two or more
    events shaped like it goes out through `text_run`, every other event through `feed`, in order. The
    translator says how such an event may be named (`_run_event`) and gives the chunk head (`_run_head`)."""

    forwards_reads = True
    _slot: TextSlot | None
    _run_event = b""  # an `event: <name>` line (with its LF) the text events may carry
    _run_parser: Any = None
    _run_framing: tuple[TextSlot, bytes, bytes] | None = None

    feed_all: Callable[[Iterable[tuple[str | None, bytes]]], tuple[bytes, Exception | None]]  # StreamTranslator's

    def _run_head(self) -> bytes:
        """The content chunk head for a run's events, after whatever the first of them would change."""
        raise NotImplementedError

    def forward(self, data: bytes) -> tuple[bytes, Exception | None] | None:
        crlf = 13 in data
        sep = b"\r\n\r\n" if crlf else b"\n\n"
        # the transport's BlockSSEParser splits a read at `sep` too (CRLF once a CR is in it), so a read
        # ending in `sep` cut there event by event parses the same, odd line ends inside an event included
        if not data.endswith(sep) or data.find(sep) + len(sep) == len(data):
            return None  # one event (nothing to gain) or an unfinished one: the transport's parser
        if self._run_parser is None:
            self._run_parser = BlockSSEParser()
        out: list[bytes] = []
        pos, n, no_run = 0, len(data), 0
        err: Exception | None = None
        while pos < n:
            if self._slot is not None and pos >= no_run:
                end, done = self._text_run(data, pos, sep, out)
                if done:
                    pos = end
                    continue
                no_run = end  # those events one by one (without looking for a run in them again)
            nxt = data.find(sep, pos) + len(sep)
            block, err = self.feed_all(self._run_parser.feed(data[pos:nxt]))
            out.append(block)
            if err is not None:
                break
            pos = nxt
        return b"".join(out), err

    def _text_run(self, data: bytes, pos: int, sep: bytes, out: list[bytes]) -> tuple[int, bool]:
        """Where the run of text events at `pos` ends and whether its chunks were appended to `out` (not when
        it is shorter than two events or `text_run` turned it down). An empty text ends a run, and so does one
        with an escape (a newline in the text, say: common, and `text_run` would turn the whole run down)."""
        slot = self._slot
        assert slot is not None
        framing = self._run_framing
        if framing is None or framing[0] is not slot or not framing[2].endswith(sep):
            framing = self._run_framing = (slot, b"data: " + slot.prefix, slot.suffix + sep)
        _, before, after = framing
        if self._run_event and data.startswith(self._run_event, pos):
            before = self._run_event + before
        end, lb, la = pos, len(before), len(after)
        texts: list[bytes] = []
        while data.startswith(before, end):
            nxt = data.find(sep, end) + len(sep)
            text = data[end + lb:nxt - la]
            # `"<at least one byte>"` between the framing (the per-event path sends nothing for an empty text)
            if len(text) < 3 or 92 in text or not data.startswith(after, nxt - la):
                break
            texts.append(text)
            end = nxt
        if len(texts) < 2:  # one event: `feed` costs no more
            return end, False
        block = text_run(texts, self._run_head)
        if block is None:
            return end, False
        out.append(block)
        return end, True


_WS = b" \t\r\n"


class TextSlot:
    """Where an upstream stream event's one `text` string sits in its bytes, to read the next ones like it cheaply.

    Upstreams send every text delta in one shape (Anthropic's `content_block_delta`/`text_delta`, a Gemini chunk
    of one candidate with one text part and the same usage/model/id tail). Once the translator has read such an
    event in full (`learn`), the bytes before and after its text literal are kept: an event made of exactly
    those bytes around one JSON string is the same JSON but for that text, so `match` parses only the string.
    Anything else (another shape, a changed tail, invalid JSON) is None: the caller reads it in full.
    """

    __slots__ = ("_lp", "_ls", "prefix", "suffix")

    def __init__(self, prefix: bytes, suffix: bytes) -> None:
        self.prefix, self.suffix = prefix, suffix
        self._lp, self._ls = len(prefix), len(suffix)

    @classmethod
    def learn(cls, data: bytes, text: str) -> TextSlot | None:
        """`data` is valid JSON (just parsed) with one `"text"` key whose value is `text`; None otherwise."""
        span = _text_span(data)
        if span is None:
            return None
        a, b = span
        try:
            if orjson.loads(data[a:b]) != text:
                return None
        except orjson.JSONDecodeError:
            return None
        return cls(data[:a], data[b:])

    def match(self, data: bytes) -> str | None:
        """The text of an event shaped like the learned one, None for any other event."""
        lp, end = self._lp, len(data) - self._ls
        if end - lp < 2 or data[:lp] != self.prefix or data[end:] != self.suffix:  # slices beat startswith here
            return None
        try:
            text = orjson.loads(data[lp:end])
        except orjson.JSONDecodeError:
            return None
        return text if type(text) is str else None


def _escaped(data: bytes, i: int) -> bool:
    """Whether the `"` at `i` is escaped (an odd run of backslashes before it). In valid JSON an unescaped `"`
    opens or closes a string: backslashes occur only inside strings."""
    n = 0
    while i > n and data[i - 1 - n] == 92:
        n += 1
    return n % 2 == 1


def _skip_ws(data: bytes, j: int) -> int:
    n = len(data)
    while j < n and data[j] in _WS:
        j += 1
    return j


def _text_span(data: bytes) -> tuple[int, int] | None:
    """The byte span of the string value of the only `"text"` key in valid JSON `data`, or None."""
    span = None
    i = data.find(b'"text"')
    while i >= 0:
        # an unescaped quote before `text"` opens a string (closing one there would leave `text"` outside
        # any string: not JSON), so this is the string "text"; a colon after it makes it a key
        if not _escaped(data, i):
            j = _skip_ws(data, i + 6)
            if j < len(data) and data[j] == 58:  # ':'
                if span is not None:
                    return None  # two text keys
                a = _skip_ws(data, j + 1)
                if a >= len(data) or data[a] != 34:  # '"': the value is not a string
                    return None
                k = data.find(b'"', a + 1)
                while k >= 0 and _escaped(data, k):
                    k = data.find(b'"', k + 1)
                if k < 0:
                    return None
                span = (a, k + 1)
                i = k  # go on after the value: quotes inside it are escaped anyway
        i = data.find(b'"text"', i + 1)
    return span


def encode_embedding(vector: list[float], encoding_format: Any) -> list[float] | str:
    """`encoding_format: base64` is little-endian float32 bytes; the openai SDK asks for it by default."""
    if encoding_format == "base64":
        return base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode()
    return vector


def embeddings_list(model: str, vectors: list[list[float]], prompt_tokens: int, encoding_format: Any) -> JSON:
    return {
        "object": "list",
        "data": [{"object": "embedding", "index": i, "embedding": encode_embedding(v, encoding_format)}
                 for i, v in enumerate(vectors)],
        "model": model,
        "usage": {"prompt_tokens": prompt_tokens, "total_tokens": prompt_tokens},
    }
