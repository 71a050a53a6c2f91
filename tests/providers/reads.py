"""Driving a stream translator the way the transport does, read by read, against parsing every event:
the equivalence checks of the whole-read fast paths (OpenAIStream.forward, shapes.TextRuns) share these."""

from __future__ import annotations

import itertools
import random
from typing import Any

from proxy.infra.sse import BlockSSEParser, SSEParser
from proxy.providers.base import StreamTranslator
from proxy.providers.transport import translate_read


def cut_reads(data: bytes, sep: bytes, r: random.Random, at_ends: float = 0.5,
              max_at_ends: int | None = None) -> list[bytes]:
    """`data` as upstream reads: mostly cut at event ends (`sep`: a server flushing per event, or several),
    otherwise anywhere."""
    if len(data) < 2:
        return [data] if data else []
    if r.random() < at_ends:
        ends = [i + len(sep) for i in range(len(data)) if data.startswith(sep, i)]
        n = len(ends) if max_at_ends is None else min(len(ends), max_at_ends)
        cuts = sorted(r.sample(ends, r.randint(0, n)))
    else:
        cuts = sorted(r.sample(range(1, len(data)), min(len(data) - 1, r.randint(0, 6))))
    edges = [0, *cuts, len(data)]
    return [data[a:b] for a, b in itertools.pairwise(edges) if b > a]


def outcome(st: StreamTranslator, out: bytes, err: Exception | None) -> tuple[Any, ...]:
    """What a client and the metering see of a stream: its bytes, its error, usage, finish reason, model."""
    u = st.usage
    error = (type(err).__name__, str(err), getattr(err, "status", None)) if err else None
    return out, error, (u.prompt_tokens, u.completion_tokens) if u else None, st.finish_reason, st.model


def event_by_event(st: StreamTranslator, data: bytes) -> tuple[Any, ...]:
    parser = SSEParser()
    return outcome(st, *st.feed_all(parser.feed(data) + parser.close()))


def as_the_transport_reads(st: StreamTranslator, pieces: list[bytes]) -> tuple[Any, ...]:
    parser, out, err = BlockSSEParser(), b"", None
    for piece in pieces:
        block, err = translate_read(piece, parser, st)
        out += block
        if err is not None:
            break
    else:
        block, err = st.feed_all(parser.close())
        out += block
    return outcome(st, out, err)
