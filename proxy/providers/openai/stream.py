"""OpenAI chat-completion chunks, forwarded byte for byte: only a few are parsed (first, final, usage)."""

from __future__ import annotations

import orjson

from proxy.core.errors import UpstreamError
from proxy.infra.sse import DONE
from proxy.providers.base import JSON, StreamTranslator, Usage

_FINISH = b'"finish_reason"'
_NULL_FINISH = (b'"finish_reason":null', b'"finish_reason": null')


class OpenAIStream(StreamTranslator):
    """Pass-through: chunks are forwarded byte for byte; only a few are parsed (first, final, usage)."""

    forwards_reads = True
    # bytes that make `feed` look at an event (beside the first one, a non-null finish_reason and [DONE]);
    # in JSON they can only be a key or an event's start, as a quote inside a string is escaped
    look_for: tuple[bytes, ...] = (b'"prompt_tokens"', b'data: {"error"')

    def __init__(self, request_body: JSON, model: str) -> None:
        super().__init__(request_body, model)
        self._seen_first = False

    def forward(self, data: bytes) -> tuple[bytes, Exception | None] | None:
        """A read of whole one-line `data: {...}` events (what OpenAI-compatible servers send): a few byte
        scans over all of it find the events `feed` must see (the first, a final or usage one, an error,
        [DONE]); the run of events before them (the content deltas) is forwarded as it came."""
        if 13 in data or not data.startswith(b"data: {") or not data.endswith(b"\n\n"):
            return None  # CRLF, event: lines, comments...: the SSE parser
        size = len(data) - len(DONE) if data.endswith(DONE) else len(data)
        # one-line JSON events (+ a last [DONE]): every LF is one of a `\n\ndata: {` or of the final `\n\n`
        if data.count(b"\n", 0, size) != 2 * data.count(b"\n\ndata: {", 0, size) + 2:
            return None
        out: list[bytes] = []
        start = 0
        if not self._seen_first:
            start = data.index(b"\n\n") + 2
            head, err = self._feed_events(data[:start])
            if err is not None:
                return head, err
            out.append(head)
        end = size
        for marker in self.look_for:
            if (i := data.find(marker, start, end)) >= 0:
                end = i
        non_null = data.count(_FINISH, start, end) - data.count(_NULL_FINISH[0], start, end)
        if non_null:  # a final chunk, or a server writing `: null`
            non_null -= data.count(_NULL_FINISH[1], start, end)
        while non_null:  # walk back to the first non-null finish_reason (normally the last one seen)
            end = data.rfind(_FINISH, start, end)
            if not data.startswith(_NULL_FINISH, end):
                non_null -= 1
        cut = data.rfind(b"\n\n", start, end) + 2 if end < len(data) else end
        if cut < start + 2:  # the first event from `start` is already one to look at
            cut = start
        if start == 0 and cut == len(data):
            return data, None  # the common case: nothing to look at, the read leaves as it came
        out.append(data[start:cut])
        if cut == len(data):
            return b"".join(out), None
        tail, err = self._feed_events(data[cut:])
        out.append(tail)
        return b"".join(out), err

    def _feed_events(self, events: bytes) -> tuple[bytes, Exception | None]:
        """`feed_all` for `data: <payload>` events known to be one line each, ending in a blank line."""
        return self.feed_all([(None, line[6:]) for line in events[:-2].split(b"\n\n")])

    def feed(self, event: str | None, data: bytes) -> list[bytes]:
        if data == b"[DONE]":
            return []
        if data.startswith(b'{"error"') or (event == "error"):
            err = orjson.loads(data).get("error") or {}
            raise UpstreamError(502, str(err.get("message") or "upstream stream error"), kind="stream_cut",
                                retryable=True, code=err.get("code") or "upstream_stream_error")
        has_usage = b'"prompt_tokens"' in data
        final = _NULL_FINISH[0] not in data and _NULL_FINISH[1] not in data
        if not self._seen_first or has_usage or final:
            chunk = orjson.loads(data)
            if not self._seen_first:
                self._seen_first = True
                self.model = chunk.get("model") or self.model
            if has_usage and chunk.get("usage"):
                self.usage = Usage.from_openai(chunk["usage"])
                if not chunk.get("choices") and not self.include_usage:
                    return []  # we asked for usage, the client did not: strip that extra chunk
            for choice in chunk.get("choices") or ():
                if choice.get("finish_reason"):
                    self.finish_reason = choice["finish_reason"]
        return [data]
