"""AWS event-stream: the mock's encoder and the gateway's decoder agree, byte boundaries do not matter,
exceptions become the right errors, corrupt or truncated streams are reported."""

from __future__ import annotations

import zlib
from collections.abc import AsyncIterator

import orjson
import pytest
from botocore.eventstream import EventStreamBuffer

from mockupstream.aws import encode_frame, event_frame, exception_frame
from proxy.core.errors import UpstreamError
from proxy.providers.bedrock.eventstream import iter_eventstream
from proxy.providers.bedrock.stream import ConverseStream
from tests.providers.goldens import golden


async def pieces(data: bytes, size: int) -> AsyncIterator[bytes]:
    for i in range(0, len(data), size):
        yield data[i:i + size]


async def collect(data: bytes, size: int) -> list[tuple[str | None, bytes]]:
    return [ev async for ev in iter_eventstream(pieces(data, size))]


def test_encoder_matches_botocore_parser() -> None:
    frame = encode_frame({":event-type": "messageStart", ":message-type": "event"}, b'{"role":"assistant"}')
    buf = EventStreamBuffer()
    buf.add_data(frame)
    msg = next(buf)
    assert msg.headers == {":event-type": "messageStart", ":message-type": "event"}
    assert msg.payload == b'{"role":"assistant"}'
    assert msg.prelude.total_length == len(frame)
    assert int.from_bytes(frame[-4:], "big") == zlib.crc32(frame[:-4])


@pytest.mark.parametrize("size", [1, 7, 64, 100_000])
async def test_round_trip_any_chunking(size: int) -> None:
    g = golden("bedrock", "stream_tool.json")
    wire = b"".join(event_frame(e, p) for e, p in g["events"])
    events = await collect(wire, size)
    assert [e for e, _ in events] == [e for e, _ in g["events"]]
    # payloads carry Bedrock's `p` padding; the translator ignores it
    tr = ConverseStream(g["openai_request"], "m")
    deltas = [orjson.loads(c)["choices"][0]["delta"] for e, p in events for c in tr.feed(e, p)]
    assert deltas == [d for d, _ in g["deltas"]]


@pytest.mark.parametrize("exc,status,kind", [("throttlingException", 429, "rate_limit"),
                                             ("serviceUnavailableException", 503, "overloaded"),
                                             ("modelNotReadyException", 503, "overloaded"),
                                             ("validationException", 400, "bad_request"),
                                             ("modelStreamErrorException", 502, "stream_cut"),
                                             ("internalServerException", 502, "stream_cut")])
async def test_exception_frames(exc: str, status: int, kind: str) -> None:
    wire = event_frame("messageStart", {"role": "assistant"}) + exception_frame(exc, "it broke")
    got: list[str | None] = []
    with pytest.raises(UpstreamError) as e:
        async for event, _ in iter_eventstream(pieces(wire, 5)):
            got.append(event)
    assert got == ["messageStart"]
    assert (e.value.status, e.value.kind) == (status, kind) and "it broke" in e.value.message


async def test_error_message_type() -> None:
    wire = encode_frame({":message-type": "error", ":error-code": "ThrottlingException",
                         ":error-message": "slow down"}, b"")
    with pytest.raises(UpstreamError) as e:
        await collect(wire, 10)
    assert e.value.status == 429 and e.value.message == "slow down"


async def test_corrupt_frame_is_a_bad_response() -> None:
    frame = bytearray(event_frame("messageStart", {"role": "assistant"}))
    frame[20] ^= 0xFF
    with pytest.raises(UpstreamError) as e:
        await collect(bytes(frame), 8)
    assert e.value.kind == "bad_response" and e.value.retryable


async def test_truncated_stream_is_a_cut() -> None:
    wire = event_frame("messageStart", {"role": "assistant"}) + event_frame("messageStop", {"stopReason": "x"})
    with pytest.raises(UpstreamError) as e:
        await collect(wire[:-3], 16)
    assert e.value.kind == "stream_cut"


async def test_non_event_messages_are_skipped() -> None:
    wire = encode_frame({":message-type": "initial-response"}, b"{}") + event_frame("metadata", {"usage": {}})
    assert [e for e, _ in await collect(wire, 9)] == ["metadata"]
