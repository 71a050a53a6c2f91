"""The overhead part of loadtests/chaos.py: what routing + breaker + retry cost when nothing fails.

Two measurements:
* in-process (`micro`): the full Executor against one bare provider call, with a provider that
  answers at once, so the difference is exactly the machinery's CPU per request;
* end to end (`overhead`): wrk against the gateway with the full executor and with a bare one-call
  executor (`serve --bare`, the pre-resilience behaviour), interleaved rounds, CPU per request of
  the gateway process read from /proc.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from types import ModuleType
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
HOST = "127.0.0.1"
KEY = "sk-chaos"


def serve(config: str, port: int, bare: bool) -> int:
    """Child mode: run the gateway; with --bare the executor makes exactly one call, no machinery."""
    sys.path.insert(0, str(ROOT))
    import uvloop
    from aiohttp import web

    from proxy.app import build_app, build_gateway
    from proxy.config import load_config
    from proxy.context import Attempt
    from proxy.resilience import Executor

    class BareExecutor(Executor):
        async def _run(self, ctx: Any, op: int) -> Any:
            slot = self.plans[ctx.served_alias].slots[0]
            t0 = time.perf_counter()
            result = await slot.client.complete(ctx.body, slot.model, slot.opts)  # type: ignore[union-attr]
            # what the pre-resilience executor did too (metering observes attempt durations)
            ctx.attempts.append(Attempt(slot.provider, slot.model, 200, None, time.perf_counter() - t0,
                                        ctx.served_alias))
            ctx.provider, ctx.upstream_model = slot.provider, slot.model
            return result

    cfg = load_config(config)
    gw = build_gateway(cfg)
    if bare:
        full = gw.pipeline.executor
        gw.pipeline.executor = BareExecutor(cfg, full.router, full.providers)
    uvloop.install()
    web.run_app(build_app(cfg, gw), host=HOST, port=port, print=None, access_log=None, handler_cancellation=True)
    return 0


def wrk(url: str, seconds: int, conns: int) -> dict[str, Any]:
    env = {**os.environ, "GATEWAY_KEY": KEY, "GATEWAY_MODEL": "bench"}
    argv = ["wrk", "-t1", f"-c{conns}", f"-d{seconds}s", "--latency", "-s", str(ROOT / "loadtests/wrk/chat.lua"),
            url + "/v1/chat/completions"]
    if (os.cpu_count() or 1) > 1:
        argv = ["taskset", "-c", "1", *argv]
    out = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=seconds + 30, check=True).stdout
    line = next(x for x in out.splitlines() if x.startswith("WRK_JSON "))
    r = json.loads(line[9:])
    r["rps"] = r["requests"] / (r["duration_us"] / 1e6)
    return r


def overhead(tmp: Path, cfg: dict[str, Any], args: argparse.Namespace, harness: ModuleType) -> dict[str, Any]:
    """wrk, nothing failing: full executor vs bare executor. Both gateways run side by side (same core)
    and short wrk runs alternate between them, so bursts of other load on a shared machine hit both."""
    _, mock_url = harness.start_mock(tmp, "bench-mock")
    cfg = {**cfg, "providers": {**cfg["providers"], "flaky": {**cfg["providers"]["flaky"],
                                                            "base_url": mock_url + "/v1"}}}
    gateways = {v: harness.start_gateway(tmp, cfg, bare=v == "bare") for v in ("full", "bare")}
    runs: dict[str, list[tuple[float, float]]] = {"full": [], "bare": []}  # (req/s, CPU us per request)
    try:
        for _, url in gateways.values():
            asyncio.run(_wait(harness, url))
            wrk(url, 2, 50)  # warm-up
        for i in range(args.rounds):
            for variant in ("full", "bare") if i % 2 == 0 else ("bare", "full"):
                gw, url = gateways[variant]
                cpu0 = cpu_seconds(gw.pid)
                w = wrk(url, args.wrk_seconds, 50)
                runs[variant].append((w["rps"], (cpu_seconds(gw.pid) - cpu0) / w["requests"] * 1e6))
    finally:
        for gw, _ in gateways.values():
            harness.stop(gw)
    full_cpu = statistics.median(c for _, c in runs["full"])
    bare_cpu = statistics.median(c for _, c in runs["bare"])
    return {"full_rps": statistics.median(r for r, _ in runs["full"]),
            "bare_rps": statistics.median(r for r, _ in runs["bare"]),
            "full_cpu_us": full_cpu, "bare_cpu_us": bare_cpu,
            # CPU-bound throughput is 1 / CPU per request; CPU time is what other load on a shared
            # machine disturbs least (req/s is reported too)
            "cost": 1 - bare_cpu / full_cpu, "runs": runs, "micro": micro()}


def micro(n: int = 200_000) -> dict[str, float]:
    """In-process: the full Executor vs one bare provider call against a provider that answers at once,
    so the difference is exactly the machinery's CPU per request, free of network and machine noise."""
    sys.path.insert(0, str(ROOT))
    from proxy.config import parse_config
    from proxy.context import Attempt, RequestContext
    from proxy.providers.base import Completion, Usage
    from proxy.providers.transport import HttpProvider
    from proxy.resilience import Executor
    from proxy.routing import Router

    answer = Completion(b"{}", Usage(1, 1), "m")

    class Instant(HttpProvider):
        async def complete(self, body: Any, model: str, opts: Any) -> Completion:
            return answer

    cfg = parse_config({"providers": {"p": {"type": "openai", "api_key": "x"}},
                        "models": {"m": {"route": [{"provider": "p", "model": "x"}]}}}, env={})
    provider = Instant("p", cfg.providers["p"], None)  # type: ignore[arg-type]
    executor = Executor(cfg, Router(cfg), {"p": provider})
    slot = executor.plans["m"].slots[0]

    async def bare(ctx: RequestContext) -> Completion:
        t0 = time.perf_counter()
        r = await provider.complete(ctx.body, slot.model, slot.opts)
        ctx.attempts.append(Attempt("p", "x", 200, None, time.perf_counter() - t0, "m"))
        ctx.provider, ctx.upstream_model = "p", "x"
        return r

    async def timed(fn: Any) -> float:
        t0 = time.perf_counter()
        for _ in range(n):
            ctx = RequestContext("chat", "r", "")
            ctx.alias = ctx.served_alias = "m"
            await fn(ctx)
        return (time.perf_counter() - t0) / n * 1e6

    async def best() -> dict[str, float]:
        full, bare_us = min([await timed(executor.complete) for _ in range(3)]), min(
            [await timed(bare) for _ in range(3)])
        return {"full_us": full, "bare_us": bare_us, "delta_us": full - bare_us}

    return asyncio.run(best())


def cpu_seconds(pid: int) -> float:
    text = Path(f"/proc/{pid}/stat").read_text()
    fields = text[text.rindex(")") + 2:].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def _wait(harness: ModuleType, url: str) -> None:
    import aiohttp

    async with aiohttp.ClientSession() as s:
        await harness.wait_http(s, url + "/healthz")
