"""Backends, stream accumulation/replay and single-flight, without HTTP."""

from __future__ import annotations

import asyncio
import random
import time

import orjson
import pytest

from proxy.cache.accumulate import Accumulator
from proxy.cache.backend import ENTRY_OVERHEAD, Entry, decode, encode
from proxy.cache.coalesce import Flights
from proxy.cache.memory import MemoryBackend
from proxy.cache.replay import replay_chunks
from proxy.observability import metrics as m
from proxy.providers.base import ChunkStream, Completion, StreamTranslator, Usage


def entry(body: bytes, ttl: float = 60, aliases: tuple[str, ...] = ("a",)) -> Entry:
    now = time.time()
    return Entry(Completion(body=body, usage=Usage(3, 4), model="m", finish_reason="stop"), "p", "um", now,
                 now + ttl, aliases)


# ---------------------------------------------------------------- memory backend
async def test_memory_lru_never_exceeds_its_byte_bound() -> None:
    bound = 20_000
    mem = MemoryBackend(bound, m.Recorder())
    evictions = m.CACHE_EVICTIONS._value.get()
    rng = random.Random(7)
    for i in range(500):
        await mem.set(f"{i:032x}", entry(b"x" * rng.randint(0, 3000)))
        assert mem.bytes <= bound
        assert mem.bytes == sum(e.size(k) for k, (e, _) in mem._data.items())
    assert mem.evictions > 0 and m.CACHE_EVICTIONS._value.get() - evictions == mem.evictions
    assert m.CACHE_BYTES._value.get() == mem.bytes


async def test_memory_evicts_least_recently_used() -> None:
    one = entry(b"x" * 100).size("k" * 32)
    mem = MemoryBackend(one * 3)
    for k in "abc":
        await mem.set(k * 32, entry(b"x" * 100))
    assert await mem.get("a" * 32) is not None  # a becomes most recent: b is next out
    await mem.set("d" * 32, entry(b"x" * 100))
    assert await mem.get("b" * 32) is None
    assert all([await mem.get(k * 32) for k in "acd"])


async def test_memory_expiry_replace_too_big_and_clear() -> None:
    mem = MemoryBackend(10_000)
    await mem.set("k", entry(b"old", ttl=-1))
    assert await mem.get("k") is None and mem.bytes == 0 and len(mem) == 0
    await mem.set("k", entry(b"a"))
    await mem.set("k", entry(b"bb"))
    assert len(mem) == 1 and (await mem.get("k")).completion.body == b"bb"  # type: ignore[union-attr]
    await mem.set("big", entry(b"x" * 10_000))  # bigger than the whole cache: not stored, nothing evicted
    assert await mem.get("big") is None and len(mem) == 1
    await mem.set("j", entry(b"x", aliases=("other", "served")))
    assert await mem.clear_alias("served") == 1 and await mem.clear_alias("served") == 0
    assert await mem.delete("k") and not await mem.delete("k")
    await mem.set("k", entry(b"x"))
    assert await mem.clear() == 1 and mem.bytes == 0
    await mem.close()


def test_entry_size_counts_overhead() -> None:
    assert entry(b"").size("") >= ENTRY_OVERHEAD


def test_encode_decode_roundtrip() -> None:
    e = entry(b'{"a":\n1}', aliases=("x", "y"))
    d = decode(encode(e))
    assert d.completion.body == b'{"a":\n1}' and d.completion.usage == Usage(3, 4)
    assert (d.provider, d.upstream_model, d.aliases, d.created) == ("p", "um", ("x", "y"), e.created)


# ---------------------------------------------------------------- accumulate / replay
def chunk(delta: dict, finish: str | None = None, index: int = 0, **extra: object) -> bytes:  # type: ignore[type-arg]
    return orjson.dumps({"id": "c1", "object": "chat.completion.chunk", "created": 5, "model": "m",
                         "system_fingerprint": "fp", "choices": [{"index": index, "delta": delta,
                                                                  "logprobs": None, "finish_reason": finish}],
                         **extra})


TOOL_STREAM = [
    chunk({"role": "assistant", "content": None}),
    chunk({"tool_calls": [{"index": 0, "id": "call_1", "type": "function",
                           "function": {"name": "get_weather", "arguments": ""}}]}),
    chunk({"tool_calls": [{"index": 0, "function": {"arguments": '{"city":'}}]}),
    chunk({"tool_calls": [{"index": 1, "id": "call_2", "type": "function",
                           "function": {"name": "get_time", "arguments": "{}"}}]}),
    chunk({"tool_calls": [{"index": 0, "function": {"arguments": '"Paris"}'}}]}),
    chunk({}, "tool_calls"),
    orjson.dumps({"id": "c1", "object": "chat.completion.chunk", "created": 5, "model": "m", "choices": [],
                  "usage": {"prompt_tokens": 7, "completion_tokens": 9, "total_tokens": 16}}),
]


def test_accumulate_tool_calls_with_incremental_arguments() -> None:
    c = Accumulator().feed_all(TOOL_STREAM).completion(None, "fallback")
    assert c is not None and c.finish_reason == "tool_calls" and c.usage == Usage(7, 9)
    data = orjson.loads(c.body)
    msg = data["choices"][0]["message"]
    assert msg["content"] is None
    assert [(t["id"], t["function"]["name"], t["function"]["arguments"]) for t in msg["tool_calls"]] == [
        ("call_1", "get_weather", '{"city":"Paris"}'), ("call_2", "get_time", "{}")]
    assert (data["id"], data["created"], data["model"], data["system_fingerprint"]) == ("c1", 5, "m", "fp")


def test_accumulate_content_choices_logprobs_and_refusal() -> None:
    lp = {"content": [{"token": "a", "logprob": -0.1}], "refusal": None}
    stream = [chunk({"role": "assistant", "content": ""}), chunk({"content": "Hel"}, logprobs=None),
              chunk({"content": "lo"}, index=1), orjson.dumps({"choices": [{"index": 0, "delta": {"content": "lo"},
                                                                           "logprobs": lp}]}),
              chunk({"refusal": "no"}, index=2), chunk({"function_call": {"name": "f", "arguments": "{"}}, index=3),
              chunk({"function_call": {"arguments": "}"}}, index=3),
              chunk({}, "stop"), chunk({}, "length", index=1), chunk({}, "stop", index=2),
              chunk({}, "stop", index=3)]
    c = Accumulator().feed_all(stream).completion(Usage(1, 2), "m")
    assert c is not None and c.usage == Usage(1, 2)
    ch = orjson.loads(c.body)["choices"]
    assert [x["message"]["content"] for x in ch] == ["Hello", "lo", "", None]
    assert ch[0]["logprobs"]["content"] == lp["content"] and ch[1]["finish_reason"] == "length"
    assert ch[2]["message"]["refusal"] == "no"
    assert ch[3]["message"]["function_call"] == {"name": "f", "arguments": "{}"}
    assert orjson.loads(c.body)["usage"]["total_tokens"] == 3


@pytest.mark.parametrize("stream", [
    [chunk({"content": "x"})],  # no finish: cut
    [chunk({"content": "x"}), chunk({}, "content_filter")],
    [chunk({"content": "x"}), b"{not json", chunk({}, "stop")],
    [b"[1]"],
    [],
])
def test_accumulate_refuses_incomplete_or_odd_streams(stream: list[bytes]) -> None:
    assert Accumulator().feed_all(stream).completion(None, "m") is None


def test_replay_round_trips_through_accumulate() -> None:
    original = Accumulator().feed_all(TOOL_STREAM).completion(None, "m")
    assert original is not None
    chunks = replay_chunks(orjson.loads(original.body), include_usage=True)
    parsed = [orjson.loads(c) for c in chunks]
    assert all(p["object"] == "chat.completion.chunk" and "usage" in p for p in parsed)
    assert parsed[-1]["choices"] == [] and parsed[-1]["usage"]["total_tokens"] == 16
    again = Accumulator().feed_all(chunks).completion(None, "m")
    assert again is not None and orjson.loads(again.body) == orjson.loads(original.body)


def test_replay_without_usage_has_no_usage_fields() -> None:
    data = {"id": "x", "created": 1, "model": "m", "choices": [
        {"index": 0, "message": {"role": "assistant", "content": "hi", "refusal": "r",
                                 "function_call": {"name": "f", "arguments": "{}"}}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}}
    parsed = [orjson.loads(c) for c in replay_chunks(data, include_usage=False)]
    assert all("usage" not in p for p in parsed)
    assert parsed[0]["choices"][0]["delta"] == {"role": "assistant", "content": "", "refusal": None}
    assert parsed[-1]["choices"][0]["finish_reason"] == "stop"


# ---------------------------------------------------------------- single flight
async def test_single_flight_shares_and_survives_a_leaving_waiter() -> None:
    flights, calls = Flights(), 0
    release = asyncio.Event()

    async def work() -> str:
        nonlocal calls
        calls += 1
        await release.wait()
        return "answer"

    leader = asyncio.ensure_future(flights.run("k", work))
    await asyncio.sleep(0)
    quitter = asyncio.ensure_future(flights.run("k", work))
    waiter = asyncio.ensure_future(flights.run("k", work))
    await asyncio.sleep(0)
    leader.cancel()
    quitter.cancel()
    await asyncio.sleep(0)
    release.set()
    assert await waiter == ("answer", True)
    assert calls == 1 and len(flights) == 0


async def test_single_flight_cancels_when_everyone_left() -> None:
    flights, cancelled = Flights(), asyncio.Event()

    async def work() -> str:
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError:
            cancelled.set()
            raise
        return "never"

    a = asyncio.ensure_future(flights.run("k", work))
    b = asyncio.ensure_future(flights.run("k", work))
    await asyncio.sleep(0.01)
    a.cancel()
    b.cancel()
    await asyncio.wait_for(cancelled.wait(), 1)
    assert len(flights) == 0


async def test_single_flight_errors_reach_everyone() -> None:
    flights = Flights()

    async def boom() -> str:
        await asyncio.sleep(0.01)
        raise ValueError("upstream")

    results = await asyncio.gather(*(flights.run("k", boom) for _ in range(3)), return_exceptions=True)
    assert all(isinstance(r, ValueError) for r in results)


class _T(StreamTranslator):
    def feed(self, event: str | None, data: bytes) -> list[bytes]:
        return [data]


def fake_stream(parts: list[bytes], gap: float = 0.0, fail_after: int | None = None) -> ChunkStream:
    translator = _T({}, "m")

    async def gen():  # type: ignore[no-untyped-def]
        for i, p in enumerate(parts):
            if fail_after is not None and i >= fail_after:
                raise RuntimeError("cut")
            await asyncio.sleep(gap)
            yield p
        translator.usage, translator.finish_reason = Usage(1, len(parts)), "stop"

    return ChunkStream(gen(), translator)


async def test_stream_flight_fans_out_to_late_joiners() -> None:
    flights, opened = Flights(), 0
    parts = [b"a", b"b", b"c", b"d"]

    async def open_stream() -> tuple[ChunkStream, bytes | None]:
        nonlocal opened
        opened += 1
        s = fake_stream(parts, gap=0.01)
        return s, await anext(s.frames)

    async def read(delay: float) -> list[bytes]:
        await asyncio.sleep(delay)
        flight, _ = flights.stream("k", open_stream, None)
        s, first = await flight.join()
        out = [first] + [c async for c in s.frames]
        assert s.usage == Usage(1, 4) and s.finish_reason == "stop"
        return out  # type: ignore[return-value]

    results = await asyncio.gather(read(0), read(0.015), read(0.025))
    assert opened == 1 and all(r == parts for r in results)


async def test_stream_flight_error_and_open_failure() -> None:
    flights = Flights()

    async def broken() -> tuple[ChunkStream, bytes | None]:
        s = fake_stream([b"a", b"b"], fail_after=1)
        return s, await anext(s.frames)

    flight, _ = flights.stream("k", broken, None)
    s, _ = await flight.join()
    with pytest.raises(RuntimeError):
        _ = [c async for c in s.frames]

    async def refused() -> tuple[ChunkStream, bytes | None]:
        raise ValueError("no")

    flight, _ = flights.stream("k2", refused, None)
    with pytest.raises(ValueError):
        await flight.join()


async def test_cancel_all_stops_pending_calls() -> None:
    flights = Flights()

    async def slow() -> str:
        await asyncio.sleep(10)
        return "never"

    async def open_slow() -> tuple[ChunkStream, bytes | None]:
        await asyncio.sleep(10)
        raise AssertionError

    call = asyncio.ensure_future(flights.run("k", slow))
    flight, _ = flights.stream("s", open_slow, None)
    await asyncio.sleep(0)
    flights.cancel_all()
    with pytest.raises(asyncio.CancelledError):
        await call
    await asyncio.sleep(0)
    assert flight.task.cancelled() and len(flights) == 0
