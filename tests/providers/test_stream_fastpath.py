"""The per-chunk fast path of the translated streams (Anthropic, Gemini) changes no byte.

* `BlockSSEParser` yields what `SSEParser` yields, at the same `feed` call, for any bytes and any split.
* With the fast path (`TextSlot` + pre-serialised chunk heads) the translators emit the same chunk bytes, usage,
  finish reason, model and errors as with it off (`_learn = 0`: every event read in full, as before).
"""

from __future__ import annotations

import json
import random
from typing import Any

import orjson
import pytest

from proxy.core.errors import UpstreamError
from proxy.infra import sse
from proxy.infra.sse import BlockSSEParser, SSEParser
from proxy.providers.anthropic.stream import AnthropicStream
from proxy.providers.base import StreamTranslator
from proxy.providers.gemini.stream import GeminiStream
from proxy.providers.shapes import CONTENT_CHUNK_TAIL, TextSlot, content_chunk_head
from tests.providers.goldens import FIXTURES
from tests.providers.reads import as_the_transport_reads, cut_reads, event_by_event

# texts that need JSON escaping, non-ASCII, look like the surrounding JSON, or are empty
TEXTS = ["", "a", " lorem", 'say "hi"', "back\\slash", "new\nline", "tab\t", "\x00\x01\x1f", "é", "日本語", "😀",
         "</script>", "\u2028", '"}}', '","x":"', "text", '"text":"', '\\"', "/", "a" * 300, " "]


def rtext(r: random.Random) -> str:
    if r.random() < 0.7:
        return r.choice(TEXTS)
    return "".join(r.choice(TEXTS) for _ in range(r.randint(0, 4)))


def dumps(style: int, d: Any) -> bytes:
    """The same JSON as different upstreams spell it: compact, spaced, ASCII-escaped."""
    if style == 0:
        return orjson.dumps(d)
    if style == 1:
        return json.dumps(d).encode()
    if style == 2:
        return json.dumps(d, ensure_ascii=False, separators=(",", ":")).encode()
    return json.dumps(d, separators=(",", ": ")).encode()


# ---------------------------------------------------------------- BlockSSEParser == SSEParser
PIECES = [b"data: ", b"data:", b"event: ", b"event:", b"ping", b"content_block_delta", b"id: 7", b": hi", b"retry: 1",
          b"{\"a\": 1}", b"x", b" ", b"\xc3\xa9", b"\n", b"\n", b"\n\n", b"\r\n", b"\r\n\r\n", b"\r", b"e", b"d"]


def split(r: random.Random, raw: bytes) -> list[bytes]:
    if len(raw) < 2 or r.random() < 0.2:
        return [raw]
    cuts = sorted(r.sample(range(1, len(raw)), min(len(raw) - 1, r.randint(1, 12))))
    return [raw[a:b] for a, b in zip([0, *cuts], [*cuts, len(raw)], strict=True)]


def per_feed(parser: Any, pieces: list[bytes]) -> list[list[tuple[str | None, bytes]]]:
    return [parser.feed(p) for p in pieces] + [parser.close()]


def test_block_parser_matches_sse_parser_on_random_bytes() -> None:
    r = random.Random(7)
    for _ in range(4000):
        raw = b"".join(r.choice(PIECES) for _ in range(r.randint(0, 30)))
        pieces = split(r, raw)
        assert per_feed(BlockSSEParser(), pieces) == per_feed(SSEParser(), pieces), (raw, pieces)


def test_block_parser_matches_sse_parser_on_event_streams() -> None:
    r = random.Random(8)
    for _ in range(1500):
        nl = r.choice([b"\n", b"\r\n", b"\n", b"\r\n", b"\r"])
        raw = b""
        for _ in range(r.randint(0, 12)):
            if r.random() < 0.6:
                raw += b"event: " + r.choice([b"a", b"ping", b"content_block_delta", b" x "]) + r.choice([nl, b"\n"])
            raw += b"data: " + dumps(r.randint(0, 3), {"t": rtext(r)}) + nl
            if r.random() < 0.1:
                raw += b"data: second" + nl
            raw += r.choice([nl, nl, nl, b"\n", b"\r\n", nl + nl])
        pieces = split(r, raw)
        assert per_feed(BlockSSEParser(), pieces) == per_feed(SSEParser(), pieces), (raw, pieces)


@pytest.mark.parametrize("path", sorted(FIXTURES.glob("*/stream_*.sse")), ids=lambda p: f"{p.parent.name}/{p.name}")
def test_block_parser_matches_sse_parser_on_fixtures_at_every_split(path: Any) -> None:
    raw = path.read_bytes()
    for cut in range(len(raw) + 1):
        pieces = [raw[:cut], raw[cut:]]
        assert per_feed(BlockSSEParser(), pieces) == per_feed(SSEParser(), pieces)
    lf = raw.replace(b"\r\n", b"\n")
    assert per_feed(BlockSSEParser(), [lf]) == per_feed(SSEParser(), [lf])


# ---------------------------------------------------------------- translators: fast path on == off
def anthropic_events(r: random.Random) -> list[tuple[str | None, bytes]]:
    style, named = r.randint(0, 3), r.random() < 0.85
    evs: list[tuple[str | None, bytes]] = []

    def add(d: dict[str, Any]) -> None:
        evs.append((d["type"] if named else None, dumps(style, d)))

    usage = {"input_tokens": r.randint(0, 9), "output_tokens": 1, "cache_read_input_tokens": r.choice([0, 3, None])}
    add({"type": "message_start", "message": {"id": r.choice(["msg_1", ""]), "type": "message", "role": "assistant",
                                              "model": r.choice(["claude-x", "claude-y"]), "content": [],
                                              "usage": usage}})
    for idx in range(r.randint(0, 4)):
        kind = r.choice(["text", "text", "tool_use", "thinking"])
        block: dict[str, Any] = {"type": "text", "text": r.choice(["", "pre"])}
        if kind == "tool_use":
            block = {"type": "tool_use", "id": f"toolu_{idx}", "name": "f", "input": {}}
        elif kind == "thinking":
            block = {"type": "thinking", "thinking": ""}
        add({"type": "content_block_start", "index": idx, "content_block": block})
        for _ in range(r.randint(0, 25)):
            if kind == "text":
                delta: dict[str, Any] = {"type": "text_delta", "text": rtext(r)}
                if r.random() < 0.03:
                    delta["text"] = r.choice([5, None])
                add({"type": "content_block_delta", "index": idx if r.random() < 0.95 else idx + 1, "delta": delta})
            elif kind == "tool_use":
                add({"type": "content_block_delta", "index": idx,
                     "delta": {"type": "input_json_delta", "partial_json": rtext(r)}})
            else:
                add({"type": "content_block_delta", "index": idx,
                     "delta": {"type": "thinking_delta", "thinking": rtext(r)}})
            if r.random() < 0.02:
                add({"type": "ping"})
            if r.random() < 0.01:  # a second message_start: new id and model in the chunks from here on
                add({"type": "message_start", "message": {"id": "msg_2", "model": "claude-z", "usage": usage}})
            if r.random() < 0.005:
                add({"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}})
            if r.random() < 0.005:  # invalid JSON in the text slot: a control character
                evs.append(("content_block_delta",
                            b'{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"a\x01"}}'))
        add({"type": "content_block_stop", "index": idx})
    add({"type": "message_delta", "delta": {"stop_reason": r.choice(["end_turn", "max_tokens", "tool_use"])},
         "usage": {"output_tokens": r.randint(1, 99)}})
    if r.random() < 0.95:
        add({"type": "message_stop"})
    return evs


def gemini_events(r: random.Random) -> list[tuple[str | None, bytes]]:
    style, n = r.randint(0, 3), r.choice([1, 1, 1, 2])
    usage: dict[str, Any] = {"promptTokenCount": 3, "totalTokenCount": 3}
    model, rid = "gemini-x", r.choice(["rid1", None])
    evs: list[tuple[str | None, bytes]] = []
    for i in range(r.randint(0, 40)):
        if r.random() < 0.05:
            usage = {"promptTokenCount": 3, "candidatesTokenCount": i, "totalTokenCount": 3 + i,
                     "thoughtsTokenCount": r.choice([0, 2])}
        if r.random() < 0.03:
            model = r.choice(["gemini-x", "gemini-y"])
        cands = []
        for c in range(n):
            parts: list[dict[str, Any]] = []
            for _ in range(r.choice([1, 1, 1, 1, 2, 0])):
                k = r.random()
                if k < 0.8:
                    parts.append({"text": rtext(r)})
                elif k < 0.9:
                    parts.append({"text": rtext(r), "thought": True})
                else:
                    parts.append({"functionCall": {"name": "f", "args": {"q": rtext(r)}}})
            cand: dict[str, Any] = {"content": {"parts": parts, "role": "model"}, "index": c}
            if r.random() < 0.05:
                cand["finishReason"] = r.choice(["STOP", "MAX_TOKENS", "SAFETY"])
            cands.append(cand)
        d: dict[str, Any] = {"candidates": cands}
        if r.random() < 0.9:
            d["usageMetadata"] = usage
        if r.random() < 0.95:
            d["modelVersion"] = model
        if rid:
            d["responseId"] = rid
        if r.random() < 0.005:
            d = {"error": {"code": 503, "message": "overloaded", "status": "UNAVAILABLE"}}
        evs.append((None, dumps(style, d)))
    if r.random() < 0.9:
        evs.append((None, dumps(style, {
            "candidates": [{"content": {"parts": [{"text": "end"}], "role": "model"}, "finishReason": "STOP", "index": 0}],
            "usageMetadata": {"promptTokenCount": 3, "candidatesTokenCount": 9, "totalTokenCount": 12},
            "modelVersion": model})))
    return evs


def drive(st: StreamTranslator, events: list[tuple[str | None, bytes]], fast: bool) -> tuple[Any, ...]:
    st.created = 1700000000  # type: ignore[attr-defined]
    if not fast:  # every event read in full, every chunk built as a dict
        st._learn = 0  # type: ignore[attr-defined]
        if isinstance(st, AnthropicStream):
            st._content = lambda text: st._chunk({"content": text})  # type: ignore[method-assign]
    out: list[bytes] = []
    error = None
    try:
        block, err = st.feed_all(events)
        out += sse.payloads([block])
        if err is not None:
            raise err
        out += st.finish()
    except (UpstreamError, orjson.JSONDecodeError) as e:
        error = (type(e).__name__, str(e), getattr(e, "status", None), getattr(e, "kind", None))
    u = st.usage
    usage = (u.prompt_tokens, u.completion_tokens, u.cached_tokens, u.cache_write_tokens) if u else None
    return out, error, usage, st.finish_reason, st.model


@pytest.mark.parametrize(("cls", "make"), [(AnthropicStream, anthropic_events), (GeminiStream, gemini_events)],
                         ids=["anthropic", "gemini"])
def test_fast_path_changes_nothing(cls: type[StreamTranslator], make: Any) -> None:
    r = random.Random(11)
    fast_events = 0
    for _ in range(600):
        body = {"stream": True, "stream_options": {"include_usage": r.random() < 0.5}}
        events = make(r)
        on = cls(body, "asked")
        assert drive(on, events, True) == drive(cls(body, "asked"), events, False), events
        fast_events += on._slot is not None  # type: ignore[attr-defined]
    assert fast_events > 300  # the fast path was taken, not only the full read


def test_anthropic_text_deltas_take_the_fast_path() -> None:
    st = AnthropicStream({"stream": True}, "asked")
    texts = ["Hello", ' "quoted" ', "\\", "é😀", "\n\t\x00", "", "</x>", "a" * 1000]
    events = [("message_start", orjson.dumps({"type": "message_start", "message": {"id": "msg_1", "model": "claude-x",
                                                                                   "usage": {"input_tokens": 5}}}))]
    events += [("content_block_delta", dumps(1, {"type": "content_block_delta", "index": 0,
                                                 "delta": {"type": "text_delta", "text": t}})) for t in texts]
    _, first = st.feed(*events[0]), st.feed(*events[1])
    assert st._slot is not None
    out = first + [c for e in events[2:] for c in st.feed(*e)]

    def chunks(msg_id: str, model: str) -> list[bytes]:
        head = {"id": msg_id, "object": "chat.completion.chunk", "created": st.created, "model": model}
        return [orjson.dumps({**head, "choices": [{"index": 0, "delta": {"content": t}, "logprobs": None,
                                                   "finish_reason": None}]}) for t in texts if t]

    assert out == chunks("msg_1", "claude-x")
    st.feed("message_start", orjson.dumps({"type": "message_start", "message": {"id": "msg_2", "model": "claude-z"}}))
    assert [c for e in events[1:] for c in st.feed(*e)] == chunks("msg_2", "claude-z")


def test_gemini_fast_event_restores_what_a_full_read_changed() -> None:
    """A plain event after one with other usage/model sets them back, as reading it in full would."""
    def event(text: str, usage: int, model: str, finish: bool = False, thought: bool = False) -> tuple[None, bytes]:
        parts: list[dict[str, Any]] = [{"text": text}, *([{"text": "hmm", "thought": True}] if thought else [])]
        cand: dict[str, Any] = {"content": {"parts": parts, "role": "model"}, "index": 0}
        if finish:
            cand["finishReason"] = "STOP"
        return None, orjson.dumps({"candidates": [cand], "usageMetadata": {"promptTokenCount": usage},
                                   "modelVersion": model, "responseId": "r"})

    # c is no plain event (a thought part): read in full, it is not learned; d is a's shape again
    events = [event("a", 1, "m1"), event("b", 1, "m1"), event("c", 2, "m2", thought=True), event("d", 1, "m1"),
              event("e", 1, "m1"), event("", 1, "m1"), event("f", 3, "m1", finish=True)]
    on, off = GeminiStream({"stream": True}, "asked"), GeminiStream({"stream": True}, "asked")
    got = drive(on, events[:4], True)
    assert on._slot is not None and on._learn == 2  # learned once (from a): b and d went the fast way
    assert got == drive(off, events[:4], False)
    assert got[2] == (1, 0, 0, 0) and got[4] == "m1" and orjson.loads(got[0][-1])["model"] == "m1"
    assert drive(on, events[4:], True) == drive(off, events[4:], False)


# ---------------------------------------------------------------- TextSlot, content_chunk_head
def test_text_slot_learns_only_one_text_string() -> None:
    assert TextSlot.learn(b'{"a":{"text":"x"},"b":{"text":"y"}}', "x") is None  # two text keys
    assert TextSlot.learn(b'{"text":5}', "5") is None
    assert TextSlot.learn(b'{"note":"say \\"text\\": no","text":"x"}', "x") is not None  # quoted, not a key
    assert TextSlot.learn(b'{"text":"x","other":"text"}', "x") is not None  # a value, not a key
    assert TextSlot.learn(b'{"text":"\\u0078"}', "y") is None  # the span must hold the text read in full
    slot = TextSlot.learn(b'{"d": {"text" : "\\"x\\\\"}, "n": 1}', '"x\\')
    assert slot is not None and (slot.prefix, slot.suffix) == (b'{"d": {"text" : ', b'}, "n": 1}')


@pytest.mark.parametrize(("data", "want"), [
    (b'{"t":1,"text":"hi"}}', "hi"), (b'{"t":1,"text":"\\u00e9\\"\\n"}}', 'é"\n'), (b'{"t":1,"text":""}}', ""),
    (b'{"t":1,"text": "x" }}', "x"),
    (b'{"t":1,"text":"a","x":"b"}}', None), (b'{"t":1,"text":5}}', None), (b'{"t":1,"text":"a\x01"}}', None),
    (b'{"t":1,"text":"a}}', None), (b'{"t":2,"text":"a"}}', None), (b'{"t":1,"text":"a"}} ', None),
    (b'{"t":1,"text":}}', None), (b'{"t":1,"text":"\\ud800"}}', None),
])
def test_text_slot_matches_only_the_same_json_but_the_text(data: bytes, want: str | None) -> None:
    slot = TextSlot.learn(b'{"t":1,"text":"learned"}}', "learned")
    assert slot is not None and slot.match(data) == want


@pytest.mark.parametrize("head", [{"id": "msg_1", "object": "chat.completion.chunk", "created": 1, "model": "m"},
                                  {"id": 'q"\\é', "object": "chat.completion.chunk", "created": 0, "model": "日本"}])
@pytest.mark.parametrize("text", TEXTS)
def test_content_chunk_head(head: dict[str, Any], text: str) -> None:
    for index in (0, 3):
        want = orjson.dumps({**head, "choices": [{"index": index, "delta": {"content": text}, "logprobs": None,
                                                  "finish_reason": None}]})
        assert content_chunk_head(head, index) + orjson.dumps(text) + CONTENT_CHUNK_TAIL == want


# ---------------------------------------------------------------- whole reads (shapes.TextRuns.forward)
def wire(events: list[tuple[str | None, bytes]], eol: bytes) -> bytes:
    return b"".join((b"event: " + e.encode() + eol if e else b"") + b"data: " + d + eol + eol for e, d in events)


@pytest.mark.parametrize(("cls", "make", "eol"), [(AnthropicStream, anthropic_events, b"\n"),
                                                  (GeminiStream, gemini_events, b"\r\n"),
                                                  (GeminiStream, gemini_events, b"\n")],
                         ids=["anthropic", "gemini-crlf", "gemini-lf"])
def test_whole_reads_give_what_event_by_event_gives(cls: type[StreamTranslator], make: Any, eol: bytes) -> None:
    r = random.Random(5)
    runs = 0
    for _ in range(700):
        body = {"stream_options": {"include_usage": True}} if r.random() < 0.5 else {}
        data = wire(make(r), eol)
        ref, st = cls(body, "asked"), cls(body, "asked")
        ref.created = st.created = 1700000000  # type: ignore[attr-defined]
        assert as_the_transport_reads(st, cut_reads(data, eol * 2, r, 0.7, 6)) == event_by_event(ref, data)
        runs += st._run_framing is not None  # type: ignore[attr-defined]
    assert runs > 150  # text runs were really taken


def test_anthropic_text_run_is_one_pass_over_the_read() -> None:
    st = AnthropicStream({}, "m")
    st.created = 1
    delta = b'event: content_block_delta\ndata: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"%s"}}\n\n'
    start = (b'event: message_start\ndata: {"type":"message_start","message":{"id":"msg_1","model":"claude-x"}}\n\n'
             b'event: content_block_start\ndata: {"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}\n\n')
    out, err = st.forward(start + b"".join(delta % w for w in (b"a", b"b", b"c", b"d")))  # type: ignore[misc]
    assert err is None and st._run_framing is not None  # learned from "a", then "b".."d" as one run
    chunks = [orjson.loads(p) for p in sse.payloads([out])]
    assert [c["choices"][0]["delta"].get("content") for c in chunks] == ["", "a", "b", "c", "d"]
    assert {c["model"] for c in chunks} == {"claude-x"}
