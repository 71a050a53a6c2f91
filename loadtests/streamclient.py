"""Many concurrent SSE chat streams from one asyncio process; prints one JSON line of results.

    python loadtests/streamclient.py --url http://127.0.0.1:8080/v1/chat/completions --key sk-bench \
        --streams 2000 --ramp 1.0 --rounds 2

Stream starts are spread evenly over `--ramp` seconds. Each round opens `--streams` streams; with
`--rounds 2` the first round also warms up the keep-alive connections (client -> proxy -> upstream)
and the last round is the measured one. Time to first chunk (TTFC) is from sending the request to the
first body bytes. A stream counts as an error unless it answers 200 and ends with `data: [DONE]`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import resource
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import aiohttp


@dataclass
class Round:
    ttfc: list[float] = field(default_factory=list)
    total: list[float] = field(default_factory=list)
    errors: Counter[str] = field(default_factory=Counter)
    chunks: int = 0
    in_flight: int = 0
    peak: int = 0
    wall: float = 0.0


def percentile(values: list[float], pct: float) -> float | None:
    if not values:
        return None
    s = sorted(values)
    return s[min(len(s) - 1, max(0, math.ceil(pct / 100 * len(s)) - 1))]


async def one_stream(session: aiohttp.ClientSession, url: str, headers: dict[str, str], body: bytes,
                     delay: float, r: Round) -> None:
    await asyncio.sleep(delay)
    t0 = time.perf_counter()
    r.in_flight += 1
    r.peak = max(r.peak, r.in_flight)
    try:
        async with session.post(url, data=body, headers=headers) as resp:
            if resp.status != 200:
                await resp.read()
                r.errors[f"http_{resp.status}"] += 1
                return
            first, tail, events = True, b"", 0
            async for data in resp.content.iter_any():
                if first:
                    r.ttfc.append(time.perf_counter() - t0)
                    first = False
                events += data.count(b"data:")
                tail = (tail + data)[-32:]
            r.chunks += events
            if not tail.rstrip().endswith(b"data: [DONE]"):
                r.errors["incomplete"] += 1
                return
            r.total.append(time.perf_counter() - t0)
    except (aiohttp.ClientError, OSError, TimeoutError) as err:
        r.errors[type(err).__name__] += 1
    finally:
        r.in_flight -= 1


async def run(args: argparse.Namespace) -> dict[str, Any]:
    body = json.dumps({"model": args.model, "stream": True,
                       "messages": [{"role": "user", "content": "Say something short."}]}).encode()
    headers = {"Authorization": f"Bearer {args.key}", "Content-Type": "application/json"}
    connector = aiohttp.TCPConnector(limit=args.streams + 100, limit_per_host=0, keepalive_timeout=60)
    timeout = aiohttp.ClientTimeout(total=args.timeout)
    rounds: list[Round] = []
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        for _ in range(args.rounds):
            r = Round()
            t0 = time.perf_counter()
            await asyncio.gather(*(one_stream(session, args.url, headers, body, i * args.ramp / args.streams, r)
                                   for i in range(args.streams)))
            r.wall = time.perf_counter() - t0
            rounds.append(r)
            await asyncio.sleep(0.2)

    def summary(r: Round) -> dict[str, Any]:
        def ms(v: float | None) -> float | None:
            return None if v is None else round(v * 1000, 2)

        return {"ok": len(r.total), "errors": sum(r.errors.values()), "error_kinds": dict(r.errors),
                "peak_concurrency": r.peak, "chunks": r.chunks, "wall_s": round(r.wall, 3),
                "ttfc_p50_ms": ms(percentile(r.ttfc, 50)), "ttfc_p99_ms": ms(percentile(r.ttfc, 99)),
                "ttfc_max_ms": ms(max(r.ttfc, default=None)), "total_p50_ms": ms(percentile(r.total, 50)),
                "total_p99_ms": ms(percentile(r.total, 99))}

    return {"rounds": [summary(r) for r in rounds], "measured": summary(rounds[-1]),
            "errors": sum(sum(r.errors.values()) for r in rounds)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--url", required=True)
    p.add_argument("--key", default="sk-bench")
    p.add_argument("--model", default="bench")
    p.add_argument("--streams", type=int, default=2000)
    p.add_argument("--ramp", type=float, default=1.0, help="seconds over which stream starts are spread")
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--timeout", type=float, default=60.0, help="per-stream total timeout")
    args = p.parse_args()
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    try:
        import uvloop

        uvloop.install()
    except ImportError:  # pragma: no cover
        pass
    print("STREAMS_JSON " + json.dumps(asyncio.run(run(args))), flush=True)
    sys.exit(0)


if __name__ == "__main__":
    main()
