"""In-process microbenchmark: CPU per streamed chunk, OpenAI pass-through vs the Anthropic and Gemini translators.

    .venv/bin/python loadtests/translate_bench.py                  # all paths, both read patterns
    .venv/bin/python loadtests/translate_bench.py --streams 2000 --rounds 7
    .venv/bin/python loadtests/translate_bench.py --profile gemini  # cProfile one path
    .venv/bin/python loadtests/translate_bench.py --messages       # /v1/messages inbound vs chat completions
    .venv/bin/python loadtests/translate_bench.py --responses      # /v1/responses inbound vs chat completions

No network: the upstream bytes are the exact SSE the mock upstream (mockupstream/) writes for the
request the gateway sends it (the feature benchmark's `translation` section: 50 lorem tokens, the client
asks without `stream_options`). They are fed through the real `HttpProvider.stream` chunk generator
(transport.py: whole reads forwarded or translated, else SSE parse + translator) with a fake upstream
response, and drained the way `pipeline._respond_stream` writes a stream (`sse.relay`: one write per
upstream read, then `[DONE]`); the socket write is a list append. A stream's cost covers the translator's
construction and the chunks; the request body translation (`chat_request`, once a stream) is reported
apart. Reads: `event` delivers each upstream event in its own read (a slow upstream), `all` the whole
stream in one read (a fast one, as under load).

Timing is wall time of a single-threaded loop on the benchmark's own process: run it on an idle core.
The gateway's other per-chunk costs (aiohttp write, event loop) are not here; the end-to-end figure is
`loadtests/feature_bench.py --only translation`.

`--messages`: the Anthropic Messages inbound (`/v1/messages`) against chat completions for the same upstream
and answer. Per chunk: the same stream drained as `pipeline._respond_stream` writes it vs as
`proxy/http/inbound.py` does (each read through `AnthropicStream.feed_frames`, then its closing events), for an
OpenAI-compatible and an Anthropic upstream. Per request: what the inbound adds to a non-stream call (the
Messages request -> chat body, the chat completion -> Message and its JSON).

`--responses`: the same for the OpenAI Responses inbound (`/v1/responses`, `ResponsesStream.feed_frames`; per
request: the Responses request -> chat body, the chat completion -> Response and its JSON). `store: false`:
storing a response is one database insert, not translation.
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import sys
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from mockupstream import anthropic as mock_anthropic
from mockupstream import gemini as mock_gemini
from mockupstream.server import MockState
from proxy.inbound.anthropic import AnthropicStream, to_chat, to_message
from proxy.inbound.base import InboundStream
from proxy.inbound.responses import ResponsesStream, to_response
from proxy.inbound.responses import to_chat as responses_to_chat
from proxy.infra import sse
from proxy.providers.base import CallOptions, ChunkStream
from proxy.providers.mock import replies
from proxy.providers.registry import build_provider, registration
from proxy.providers.settings import MockBehaviour
from proxy.providers.transport import HttpProvider

PATHS = ("openai", "anthropic", "gemini")
MODELS = {"openai": "mock-1", "anthropic": "claude-mock", "gemini": "gemini-mock"}
CLIENT_BODY: dict[str, Any] = {"model": "alias", "stream": True,
                               "messages": [{"role": "user", "content": "Say something short."}]}


def provider(path: str) -> HttpProvider:
    base = {"openai": "http://mock/v1", "anthropic": "http://mock/anthropic", "gemini": "http://mock"}[path]
    p = build_provider(path, registration(path).config(base_url=base, api_key="sk-mock"))
    assert isinstance(p, HttpProvider)
    return p


def upstream_events(path: str, tokens: int) -> list[bytes]:
    """The SSE events (framed, one per mock `resp.write`) the mock upstream answers this path's request with."""
    state = MockState(MockBehaviour(reply="lorem", reply_tokens=tokens))
    model = MODELS[path]
    body = orjson.loads(provider(path).translator.chat_request(CLIENT_BODY, model, stream=True).body or b"")
    if path == "openai":  # as mockupstream/openai.py chat_completions + stream_sse
        words = replies.reply_words(body["messages"], "lorem", tokens, None)
        chunks = replies.stream_chunks(body["model"], words, replies.prompt_tokens(body["messages"]),
                                       bool((body.get("stream_options") or {}).get("include_usage")))
        return [b"data: " + orjson.dumps(c) + b"\n\n" for c in chunks] + [b"data: [DONE]\n\n"]
    if path == "anthropic":  # as mockupstream/anthropic.py messages_create + openai.stream_sse
        evs = mock_anthropic.events(body, mock_anthropic.plan(body, state))
        return [f"event: {name}\n".encode() + b"data: " + orjson.dumps(d) + b"\n\n" for name, d in evs]
    # as mockupstream/gemini.py model_call + write_sse (the URL names the model)
    events = mock_gemini.stream_events(body, model, mock_gemini.plan(body, state))
    return [b"data: " + orjson.dumps(ev) + b"\r\n\r\n" for ev in events]


class FakeContent:
    def __init__(self, reads: list[bytes]) -> None:
        self.reads = reads

    async def iter_any(self) -> AsyncIterator[bytes]:
        for r in self.reads:
            yield r


class FakeResponse:
    def __init__(self, reads: list[bytes]) -> None:
        self.content = FakeContent(reads)

    def release(self) -> None:
        pass

    def close(self) -> None:
        pass


async def drain(stream: ChunkStream, out: list[bytes]) -> None:
    """What pipeline._respond_stream does with a stream (sse.relay), with `resp.write` -> `out.append`."""

    async def write(data: bytes) -> None:
        out.append(data)

    await sse.relay(stream.frames, write)
    out.append(sse.DONE)


def run_sync(coro: Any) -> None:
    """Drive a coroutine that never suspends (the fake upstream never waits) without an event loop."""
    try:
        coro.send(None)
    except StopIteration:
        return
    coro.close()
    raise RuntimeError("the stream suspended: the benchmark needs a fake upstream that never waits")


class NoIdleWatch:
    """The stream idle timer needs an event loop, which run_sync does without; a read still stores its time."""

    def __init__(self, resp: Any, idle: float) -> None:
        self.time, self.last = time.monotonic, 0.0

    def stop(self) -> None:
        pass


def make_runner(path: str, reads: list[bytes]) -> Callable[[list[bytes]], None]:
    """One whole stream through `HttpProvider.stream` + the pipeline's write loop, appending what is written."""
    p = provider(path)
    model, opts = MODELS[path], CallOptions()

    async def send(req: Any, o: Any) -> FakeResponse:
        return FakeResponse(reads)

    p._send = send  # type: ignore[method-assign]
    p.idle_watch = NoIdleWatch  # type: ignore[assignment]
    translator = p.translator

    class NoRequest:  # the request body translation is timed apart
        def __getattr__(self, name: str) -> Any:
            return getattr(translator, name)

        def chat_request(self, body: Any, model: str, stream: bool) -> Any:
            return None

    p.translator = NoRequest()  # type: ignore[assignment]

    async def one(out: list[bytes]) -> None:
        await drain(await p.stream(CLIENT_BODY, model, opts), out)

    return lambda out: run_sync(one(out))


def messages_stream() -> InboundStream:
    return AnthropicStream("alias", 8)


def responses_stream() -> InboundStream:
    return ResponsesStream(RESPONSES_BODY, "resp_bench", "alias", {})


async def drain_messages(stream: ChunkStream, out: list[bytes],
                         new: Callable[[], InboundStream] = messages_stream) -> None:
    """What proxy/http/inbound.py does with a stream for /v1/messages (or another inbound: `new`), with
    `resp.write` -> `out.append`."""
    conv = new()
    async for block in stream.frames:
        if data := conv.feed_frames(block):
            out.append(data)
    out.append(conv.end(stream.usage))


def make_messages_runner(path: str, reads: list[bytes],
                         new: Callable[[], InboundStream] = messages_stream) -> Callable[[list[bytes]], None]:
    """`make_runner`, drained as /v1/messages (or `new`'s inbound) writes it."""
    p = provider(path)
    model, opts = MODELS[path], CallOptions()

    async def send(req: Any, o: Any) -> FakeResponse:
        return FakeResponse(reads)

    p._send = send  # type: ignore[method-assign]
    p.idle_watch = NoIdleWatch  # type: ignore[assignment]

    async def one(out: list[bytes]) -> None:
        await drain_messages(await p.stream(CLIENT_BODY, model, opts), out, new)

    return lambda out: run_sync(one(out))


MESSAGES_BODY: dict[str, Any] = {"model": "alias", "max_tokens": 256, "system": "Be brief.",
                                 "messages": [{"role": "user", "content": "Say something short."}]}


RESPONSES_BODY: dict[str, Any] = {"model": "alias", "max_output_tokens": 256, "instructions": "Be brief.",
                                  "input": "Say something short.", "store": False}


def _messages_request(answer: bytes) -> None:
    to_chat(MESSAGES_BODY)
    orjson.dumps(to_message(orjson.loads(answer), None))


def _responses_request(answer: bytes) -> None:
    responses_to_chat(RESPONSES_BODY)
    orjson.dumps(to_response(orjson.loads(answer), None, RESPONSES_BODY, "resp_bench"))


# inbound -> (its stream state machine, its per-request work, the marker of a text delta event in its stream)
INBOUNDS: dict[str, tuple[Callable[[], InboundStream], Callable[[bytes], None], bytes]] = {
    "messages": (messages_stream, _messages_request, b"event: content_block_delta"),
    "responses": (responses_stream, _responses_request, b"event: response.output_text.delta"),
}


def bench_messages(streams: int, rounds: int, tokens: int, modes: list[str],
                   inbound: str = "messages") -> dict[str, Any]:
    """An inbound API (`messages` or `responses`) against chat completions, per chunk and per request; the
    inbound's columns keep the `messages_` names."""
    new, per_request, marker = INBOUNDS[inbound]
    results: dict[str, Any] = {}
    for mode in modes:
        for path in ("openai", "anthropic"):
            evs = upstream_events(path, tokens)
            reads = evs if mode == "event" else [b"".join(evs)]
            runners = {"chat": make_runner(path, reads), "messages": make_messages_runner(path, reads, new)}
            out: list[bytes] = []
            runners["chat"](out)
            chunks = check(path, out)
            out.clear()
            runners["messages"](out)
            assert b"".join(out).count(marker) == chunks - 2, b"".join(out)[-300:]
            best = {k: float("inf") for k in runners}
            for _ in range(rounds):
                for k, run in runners.items():
                    out = []
                    t0 = time.perf_counter()
                    for _ in range(streams):
                        run(out)
                        out.clear()
                    best[k] = min(best[k], (time.perf_counter() - t0) / streams)
            chat, msgs = best["chat"] * 1e6 / chunks, best["messages"] * 1e6 / chunks
            results[f"{mode}/{path}"] = {"chunks": chunks, "chat_us_per_chunk": chat, "messages_us_per_chunk": msgs,
                                         "extra_us_per_chunk": msgs - chat, "ratio": msgs / chat}
    # per request (non-stream): the inbound's own work around the same pipeline call
    chat_answer = {"id": "chatcmpl-1", "object": "chat.completion", "created": 1, "model": "mock-1",
                   "choices": [{"index": 0, "finish_reason": "stop", "logprobs": None, "message": {
                       "role": "assistant", "content": " ".join(["lorem"] * tokens), "refusal": None}}],
                   "usage": {"prompt_tokens": 8, "completion_tokens": tokens, "total_tokens": 8 + tokens}}
    body = orjson.dumps(chat_answer)
    best_req = float("inf")
    for _ in range(rounds):
        t0 = time.perf_counter()
        for _ in range(streams):
            per_request(body)
        best_req = min(best_req, (time.perf_counter() - t0) / streams)
    results["request_us"] = best_req * 1e6
    return results


def report_messages(results: dict[str, Any], inbound: str = "messages") -> None:
    print(f"  {'reads/upstream':<18} {'chunks':>6} {'chat us/chunk':>14} {inbound + ' us/chunk':>18} "
          f"{'extra us/chunk':>15} {'ratio':>6}")
    for name, r in results.items():
        if name == "request_us":
            continue
        print(f"  {name:<18} {r['chunks']:>6} {r['chat_us_per_chunk']:>14.2f} {r['messages_us_per_chunk']:>18.2f} "
              f"{r['extra_us_per_chunk']:>15.2f} {r['ratio']:>6.2f}")
    print(f"non-stream: the inbound adds {results['request_us']:.1f} us a request (request + answer translation)")


def check(path: str, written: list[bytes]) -> int:
    """The stream written is `data: <chunk>` events + [DONE], every chunk an OpenAI chunk: -> chunk count."""
    blob = b"".join(written)
    assert blob.endswith(sse.DONE), blob[-80:]
    events = blob[: -len(sse.DONE)].split(b"\n\n")
    assert events[-1] == b""
    n = 0
    for ev in events[:-1]:
        assert ev.startswith(b"data: "), ev[:80]
        c = orjson.loads(ev[6:])
        assert c["object"] == "chat.completion.chunk" and c["choices"], (path, c)
        n += 1
    return n


def bench(streams: int, rounds: int, tokens: int, modes: list[str]) -> dict[str, dict[str, Any]]:
    results: dict[str, dict[str, Any]] = {}
    for mode in modes:
        runners, chunks = {}, {}
        for path in PATHS:
            evs = upstream_events(path, tokens)
            reads = evs if mode == "event" else [b"".join(evs)]
            run = make_runner(path, reads)
            out: list[bytes] = []
            run(out)
            chunks[path] = check(path, out)
            runners[path] = run
        best = {path: float("inf") for path in PATHS}
        for _ in range(rounds):  # interleaved rounds, best kept
            for path in PATHS:
                run = runners[path]
                out = []
                t0 = time.perf_counter()
                for _ in range(streams):
                    run(out)
                    out.clear()
                best[path] = min(best[path], (time.perf_counter() - t0) / streams)
        results[mode] = {path: {"chunks": chunks[path], "us_per_stream": best[path] * 1e6,
                                "us_per_chunk": best[path] * 1e6 / chunks[path]} for path in PATHS}
    # request body translation, once a stream
    req = {}
    for path in PATHS:
        p = provider(path)
        t0 = time.perf_counter()
        for _ in range(streams):
            p.translator.chat_request(CLIENT_BODY, MODELS[path], True)
        req[path] = (time.perf_counter() - t0) / streams * 1e6
    results["request_us"] = req
    return results


def report(results: dict[str, dict[str, Any]]) -> None:
    for mode, rs in results.items():
        if mode == "request_us":
            continue
        base = rs["openai"]["us_per_chunk"]
        print(f"reads: {mode}")
        print(f"  {'path':<10} {'chunks':>6} {'us/stream':>10} {'us/chunk':>9} {'extra us/chunk':>15} {'x openai':>9}")
        for path, r in rs.items():
            print(f"  {path:<10} {r['chunks']:>6} {r['us_per_stream']:>10.1f} {r['us_per_chunk']:>9.2f} "
                  f"{r['us_per_chunk'] - base:>15.2f} {r['us_per_chunk'] / base:>9.2f}")
    print("request body translation (once a stream), us: "
          + ", ".join(f"{p} {v:.1f}" for p, v in results["request_us"].items()))


def profile(path: str, streams: int, tokens: int, mode: str) -> None:
    evs = upstream_events(path, tokens)
    run = make_runner(path, evs if mode == "event" else [b"".join(evs)])
    out: list[bytes] = []
    prof = cProfile.Profile()
    prof.enable()
    for _ in range(streams):
        run(out)
        out.clear()
    prof.disable()
    pstats.Stats(prof).sort_stats("tottime").print_stats(25)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--streams", type=int, default=1000, help="streams a round and path (default 1000)")
    p.add_argument("--rounds", type=int, default=5, help="interleaved rounds, best kept (default 5)")
    p.add_argument("--tokens", type=int, default=50, help="lorem tokens a stream (default 50)")
    p.add_argument("--reads", default="event,all", help="read patterns: event, all (default both)")
    p.add_argument("--profile", choices=PATHS, help="cProfile one path instead")
    p.add_argument("--json", action="store_true", help="print the results as JSON")
    p.add_argument("--messages", action="store_true", help="the /v1/messages inbound vs chat completions")
    p.add_argument("--responses", action="store_true", help="the /v1/responses inbound vs chat completions")
    a = p.parse_args(argv)
    modes = [m.strip() for m in a.reads.split(",") if m.strip()]
    if set(modes) - {"event", "all"}:
        p.error("--reads takes event and/or all")
    if a.profile:
        profile(a.profile, a.streams, a.tokens, modes[0])
        return 0
    if a.messages or a.responses:
        inbound = "responses" if a.responses else "messages"
        m = bench_messages(a.streams, a.rounds, a.tokens, modes, inbound)
        print(orjson.dumps(m, option=orjson.OPT_INDENT_2).decode()) if a.json else report_messages(m, inbound)
        return 0
    results = bench(a.streams, a.rounds, a.tokens, modes)
    if a.json:
        print(orjson.dumps(results, option=orjson.OPT_INDENT_2).decode())
    else:
        report(results)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
