"""OpenAI wire format: near pass-through. Covers every OpenAI-compatible upstream (`type: openai`).

Unknown request fields are forwarded untouched; only `model` is rewritten and, for streams,
`stream_options.include_usage` forced on so usage can be metered (the extra chunk is dropped again
when the client did not ask for it). Response bytes are forwarded as the upstream sent them.
"""

from __future__ import annotations

from collections.abc import Mapping

import orjson

from proxy.core.errors import UpstreamError, upstream_error_from_status
from proxy.infra.sse import DONE
from proxy.providers.base import (
    JSON,
    Completion,
    StreamTranslator,
    Translator,
    UpstreamRequest,
    Usage,
    parse_retry_after,
)

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


class OpenAITranslator(Translator):
    default_base_url = "https://api.openai.com/v1"

    def base_url(self) -> str:
        return self.cfg.base_url or self.default_base_url

    def headers(self) -> dict[str, str]:
        h = {"Content-Type": "application/json"}
        if self.cfg.api_key:
            h["Authorization"] = f"Bearer {self.cfg.api_key}"
        h.update(self.cfg.headers)
        return h

    def prepare_body(self, body: JSON, model: str, stream: bool) -> JSON:
        """The body to send; subclasses drop fields their upstream rejects."""
        out = dict(body)
        out["model"] = model
        if stream:
            opts = out.get("stream_options")
            out["stream_options"] = {**opts, "include_usage": True} if isinstance(opts, dict) else {
                "include_usage": True}
        return out

    def chat_url(self, model: str) -> str:
        return self.base_url() + "/chat/completions"

    def embeddings_url(self, model: str) -> str:
        return self.base_url() + "/embeddings"

    def chat_request(self, body: JSON, model: str, stream: bool) -> UpstreamRequest:
        return UpstreamRequest("POST", self.chat_url(model), self.headers(),
                               orjson.dumps(self.prepare_body(body, model, stream)))

    def chat_response(self, data: bytes, model: str) -> Completion:
        d = orjson.loads(data)
        if not isinstance(d, dict) or "choices" not in d:
            raise ValueError("no `choices` in the upstream response")
        choices = d.get("choices") or [{}]
        return Completion(body=data, usage=Usage.from_openai(d.get("usage")), model=d.get("model") or model,
                          finish_reason=choices[0].get("finish_reason"), data=d)

    def stream_translator(self, body: JSON, model: str) -> StreamTranslator:
        return OpenAIStream(body, model)

    def embeddings_request(self, body: JSON, model: str) -> UpstreamRequest:
        return UpstreamRequest("POST", self.embeddings_url(model), self.headers(),
                               orjson.dumps({**body, "model": model}))

    def embeddings_response(self, data: bytes, model: str) -> Completion:
        d = orjson.loads(data)
        if not isinstance(d, dict) or "data" not in d:
            raise ValueError("no `data` in the upstream embeddings response")
        return Completion(body=data, usage=Usage.from_openai(d.get("usage")), model=d.get("model") or model,
                          data=d)

    def probe_request(self) -> UpstreamRequest | None:
        return UpstreamRequest("GET", self.base_url() + "/models", self.headers())

    def error(self, status: int, headers: Mapping[str, str], data: bytes) -> UpstreamError:
        return openai_error(status, headers, data)


def openai_error(status: int, headers: Mapping[str, str], data: bytes) -> UpstreamError:
    """OpenAI-shaped error bodies keep their message/code; context overflow and filters are named."""
    message, code, param = data[:500].decode("utf-8", "replace") or f"upstream status {status}", None, None
    try:
        err = orjson.loads(data).get("error")
        if isinstance(err, dict):
            message = str(err.get("message") or message)
            code = err.get("code") if isinstance(err.get("code"), str) else None
            param = err.get("param") if isinstance(err.get("param"), str) else None
        elif isinstance(err, str):
            message = err
    except (orjson.JSONDecodeError, AttributeError):
        pass
    if status == 400 and (code == "context_length_exceeded" or "maximum context length" in message):
        return UpstreamError(400, message, kind="context_length", retryable=False,
                             type="invalid_request_error", code="context_length_exceeded", param=param,
                             upstream_status=status)
    if status == 400 and code == "content_filter":
        return UpstreamError(400, message, kind="content_filter", retryable=False,
                             type="invalid_request_error", code="content_filter", param=param,
                             upstream_status=status)
    mapped = upstream_error_from_status(status, message, retry_after=parse_retry_after(headers), code=code)
    mapped.param = param
    return mapped
