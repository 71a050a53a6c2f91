"""OpenAI pass-through streams: whole upstream reads forwarded as they came (`OpenAIStream.forward`) must
give the client exactly what parsing every event would, with the same usage, model, finish reason and
errors, however the upstream's bytes are cut into reads."""

from __future__ import annotations

import random
from typing import Any

import orjson
import pytest

from proxy.core.errors import UpstreamError
from proxy.infra import sse
from proxy.providers.azure.stream import AzureStream
from proxy.providers.mistral.stream import MistralStream
from proxy.providers.openai.stream import OpenAIStream
from tests.providers.reads import as_the_transport_reads, cut_reads, event_by_event

TRICKY_TEXT = ['plain', 'data: [DONE]', '"error"', 'x\n\ny', '"finish_reason":"stop"', '"prompt_tokens"', 'é']


def chunk(r: random.Random, choices: list[dict[str, Any]], usage: Any = None, with_usage_key: bool = False,
          model: str = "gpt-x") -> dict[str, Any]:
    c: dict[str, Any] = {"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1, "model": model,
                         "choices": choices}
    if with_usage_key or usage is not None:
        c["usage"] = usage
    return c


def stream_events(r: random.Random) -> list[bytes]:
    """One upstream stream's payloads: role chunk, deltas (text, tool calls, n>1 choices), finish, usage."""
    n = r.choice([1, 1, 1, 2])
    usage_key = r.random() < 0.5  # OpenAI sends "usage":null on every chunk once include_usage is set
    events = [chunk(r, [{"index": i, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}
                        for i in range(n)], with_usage_key=usage_key, model=r.choice(["gpt-x", "gpt-y"]))]
    finished: set[int] = set()
    for _ in range(r.randint(0, 12)):
        live = [i for i in range(n) if i not in finished]
        if not live:
            break
        i = r.choice(live)
        delta: dict[str, Any] = ({"content": r.choice(TRICKY_TEXT)} if r.random() < 0.8 else
                                 {"tool_calls": [{"index": 0, "function": {"arguments": '{"a":'}}]})
        finish = None
        if r.random() < 0.1:
            finish = r.choice(["stop", "length", "tool_calls"])
            finished.add(i)
        events.append(chunk(r, [{"index": i, "delta": delta, "finish_reason": finish}], with_usage_key=usage_key))
    for i in range(n):
        if i not in finished:
            events.append(chunk(r, [{"index": i, "delta": {}, "finish_reason": "stop"}], with_usage_key=usage_key))
    out = [orjson.dumps(e) for e in events]
    if r.random() < 0.3:  # some servers put a space after the colon
        out = [e.replace(b'"finish_reason":null', b'"finish_reason": null') for e in out]
    if r.random() < 0.7:
        out.append(orjson.dumps(chunk(r, [], usage={"prompt_tokens": 5, "completion_tokens": len(events),
                                                    "total_tokens": 5 + len(events)})))
    if r.random() < 0.1:
        out.insert(r.randint(1, len(out)), b'{"error":{"message":"overloaded","code":"server_error"}}')
    out.append(b"[DONE]")
    return out


def wire(payloads: list[bytes], r: random.Random) -> bytes:
    """The stream as an upstream sends it; now and then in a shape `forward` must leave to the parser."""
    shape = r.random()
    if shape < 0.05:
        return b"".join(b"data: " + p + b"\r\n\r\n" for p in payloads)
    if shape < 0.1:
        return b"".join((b": keep-alive\n\n" if r.random() < 0.3 else b"") + b"data: " + p + b"\n\n"
                        for p in payloads)
    if shape < 0.15:
        return b"".join(b"event: message\ndata: " + p + b"\n\n" for p in payloads)
    return b"".join(b"data: " + p + b"\n\n" for p in payloads)


@pytest.mark.parametrize("cls", [OpenAIStream, AzureStream, MistralStream])
def test_forwarding_reads_changes_nothing(cls: type[OpenAIStream]) -> None:
    r = random.Random(7)
    forwarded = 0
    for _ in range(1500):
        body = {"stream": True, "stream_options": {"include_usage": True}} if r.random() < 0.5 else {}
        data = wire(stream_events(r), r)
        pieces = cut_reads(data, b"\n\n", r)
        fast = cls(body, "asked")
        original = fast.forward
        calls = []

        def spy(d: bytes, original: Any = original, calls: list[bool] = calls) -> Any:
            got = original(d)
            calls.append(got is not None)
            return got

        fast.forward = spy  # type: ignore[method-assign]
        assert as_the_transport_reads(fast, pieces) == event_by_event(cls(body, "asked"), data)
        forwarded += sum(calls)
    assert forwarded > 2000  # the fast path was really taken, not just the fallback


def test_a_read_of_content_deltas_leaves_as_the_same_object() -> None:
    st = OpenAIStream({}, "m")
    first = b'data: {"model":"gpt-x","choices":[{"index":0,"delta":{"role":"assistant"},"finish_reason":null}]}\n\n'
    assert st.forward(first) == (first, None) and st.model == "gpt-x"
    deltas = b"".join(b'data: {"choices":[{"index":0,"delta":{"content":"%d"},"finish_reason":null}]}\n\n' % i
                      for i in range(5))
    out, err = st.forward(deltas)  # type: ignore[misc]
    assert out is deltas and err is None


def test_usage_chunk_the_client_did_not_ask_for_is_dropped_from_a_forwarded_read() -> None:
    st = OpenAIStream({}, "m")
    st.forward(b'data: {"model":"g","choices":[{"index":0,"delta":{},"finish_reason":null}]}\n\n')
    read = (b'data: {"choices":[{"index":0,"delta":{"content":"a"},"finish_reason":null}]}\n\n'
            b'data: {"choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}\n\n'
            b'data: {"choices":[],"usage":{"prompt_tokens":3,"completion_tokens":2,"total_tokens":5}}\n\n'
            b"data: [DONE]\n\n")
    out, err = st.forward(read)  # type: ignore[misc]
    assert err is None and sse.payloads([out]) == [read.split(b"\n\n")[0][6:], read.split(b"\n\n")[1][6:]]
    assert st.usage is not None and st.usage.completion_tokens == 2 and st.finish_reason == "stop"


@pytest.mark.parametrize("seen_first", [False, True])
def test_error_event_in_a_read_comes_after_the_chunks_before_it(seen_first: bool) -> None:
    raw = (b'data: {"id":"c","choices":[{"index":0,"delta":{"content":"a"},"finish_reason":null}]}\n\n'
           b'data: {"error":{"message":"boom","code":"x"}}\n\n')
    st = OpenAIStream({}, "m")
    st._seen_first = seen_first
    out, err = st.forward(raw)  # type: ignore[misc]
    assert out == raw.split(b"\n\n")[0] + b"\n\n"
    assert isinstance(err, UpstreamError) and "boom" in err.message
