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
import statistics
import time
from pathlib import Path
from types import ModuleType
from typing import Any

from loadtests.bench.configs import HOST
from loadtests.bench.load import run_wrk
from loadtests.bench.procs import pick_cores


def serve(config: str, port: int, bare: bool) -> int:
    """Child mode: run the gateway; with --bare the executor makes exactly one call, no machinery."""
    import uvloop
    from aiohttp import web

    from proxy.app import build_app, build_gateway
    from proxy.config import load_config
    from proxy.core.context import Attempt
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
        gw.pipeline.executor = BareExecutor(cfg, gw.plans, full.providers)
    uvloop.install()
    web.run_app(build_app(cfg, gw), host=HOST, port=port, print=None, access_log=None, handler_cancellation=True)
    return 0


def overhead(tmp: Path, cfg: dict[str, Any], args: argparse.Namespace, harness: ModuleType) -> dict[str, Any]:
    """wrk, nothing failing: full executor vs bare executor. Both gateways run side by side (same core)
    and short wrk runs alternate between them, so bursts of other load on a shared machine hit both.
    `harness` is chaos.py, whose start_mock / start_gateway start the processes."""
    _, mock_url = harness.start_mock(tmp, "bench-mock")
    cfg = {**cfg, "providers": {**cfg["providers"], "flaky": {**cfg["providers"]["flaky"],
                                                            "base_url": mock_url + "/v1"}}}
    key, load_core = cfg["keys"][0]["key"], pick_cores()[1]

    def wrk(url: str, seconds: int) -> dict[str, Any]:
        w = run_wrk(url + "/v1/chat/completions", key, 50, seconds, False, load_core, tmp / "wrk-overhead.log")
        return w | {"rps": w["requests"] / (w["duration_us"] / 1e6)}

    gateways = {v: harness.start_gateway(tmp, cfg, bare=v == "bare") for v in ("full", "bare")}
    runs: dict[str, list[tuple[float, float]]] = {"full": [], "bare": []}  # (req/s, CPU us per request)
    try:
        for _, url in gateways.values():
            wrk(url, 2)  # warm-up
        for i in range(args.rounds):
            for variant in ("full", "bare") if i % 2 == 0 else ("bare", "full"):
                gw, url = gateways[variant]
                cpu0 = gw.cpu_seconds()
                w = wrk(url, args.wrk_seconds)
                runs[variant].append((w["rps"], (gw.cpu_seconds() - cpu0) / w["requests"] * 1e6))
    finally:
        for gw, _ in gateways.values():
            gw.stop()
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
    from proxy.config import parse_config
    from proxy.core.context import Attempt, RequestContext
    from proxy.providers.base import Completion, Usage
    from proxy.providers.transport import HttpProvider
    from proxy.resilience import Executor
    from proxy.resilience.plans import Plans

    answer = Completion(b"{}", Usage(1, 1), "m")

    class Instant(HttpProvider):
        async def complete(self, body: Any, model: str, opts: Any) -> Completion:
            return answer

    cfg = parse_config({"providers": {"p": {"type": "openai", "api_key": "x"}},
                        "models": {"m": {"route": [{"provider": "p", "model": "x"}]}}}, env={})
    provider = Instant("p", cfg.providers["p"], None)  # type: ignore[arg-type]
    plans = Plans(cfg)
    plans.bind({"p": provider})
    executor = Executor(cfg, plans, {"p": provider})
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
