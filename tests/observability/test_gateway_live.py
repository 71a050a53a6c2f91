"""A real gateway serves traffic of every kind; a real Prometheus scrapes it; every dashboard query and
every alert's underlying series must return data. A typo'd metric or label makes a panel silently
empty — this test is what catches it.

Traffic: success (chat, stream, embeddings), 4xx, 5xx, retries + fallback, an open breaker, cache
hits and misses, coalesced requests, rate-limited and budget-rejected calls, a routing rule, a call to a
model without a price, an agent, a chain, a compacted prompt, and a database that is down (backend errors and state, rows waiting in the ledger
queue). A second gateway, with a working database, delivers webhooks to a receiver in this test.
"""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

import aiohttp
from aiohttp import web

from tests.conftest import free_port
from tests.observability.promtest import (
    ALERTS,
    alert_base_exprs,
    dashboard_exprs,
    start_prometheus,
    variable_queries,
)

CONFIG = """
listen: {{host: 127.0.0.1, port: {port}}}
providers:
  mock: {{type: mock}}
  slow: {{type: mock, mock: {{latency: 0.4}}}}
  down: {{type: openai, base_url: "http://127.0.0.1:{closed}/v1", api_key: sk-x}}
  local: {{type: cli, command: [cat]}}
models:
  demo: {{route: [{{provider: mock, model: mock-1}}]}}
  slowdemo: {{route: [{{provider: slow, model: slow-1}}]}}
  local: {{route: [{{provider: local, model: obs-local-1}}]}}
  flaky:
    route: [{{provider: down, model: gone-1}}]
    retry: {{attempts: 2, backoff: 10ms}}
    fallbacks: [demo]
  dead:
    route: [{{provider: down, model: gone-2}}]
    retry: {{attempts: 1}}
  tidy: {{route: [{{provider: mock, model: mock-1}}], optimize: {{mode: compact}}}}
agents:
  obs-agent: {{model: demo, system: "Be brief."}}
chains:
  named:
    obs-chain:
      steps:
        - {{model: demo, prompt: "{{{{ input }}}}"}}
        - {{model: agent/obs-agent, prompt: "again {{{{ steps.step1.output }}}}"}}
routing_rules:
  - {{when: {{header: {{x-priority: low}}}}, use: demo}}
keys:
  - {{name: obs-dev, key: sk-obs, team: obs-team, budget: {{usd: 1000, period: daily}}}}
  - {{name: obs-limited, key: sk-limited, team: obs-team, limits: {{rpm: 2}}}}
  - {{name: obs-broke, key: sk-broke, team: obs-poor, budget: {{usd: 0.000001, period: daily}}}}
pricing:
  mock-1: {{input: 1.0, output: 2.0}}
breaker: {{failure_threshold: 2, reset_timeout: 60s}}
cache: {{enabled: true, backend: memory}}
database: {{url: "postgresql://postgres@127.0.0.1:{closed}/test", flush_interval: 0.2}}
logging: {{format: json, requests: false}}
"""

# the webhooks gateway: SQLite, every invocation delivered to the test's receiver (a 500 now and then)
WEBHOOKS_CONFIG = """
listen: {{host: 127.0.0.1, port: {port}}}
providers: {{mock: {{type: mock}}}}
models: {{demo: {{route: [{{provider: mock, model: mock-1}}]}}}}
keys: [{{name: obs-hooks, key: sk-hooks, team: obs-team}}]
database: {{url: "sqlite:///{tmp}/hooks.db"}}
logging: {{format: json, requests: false}}
webhooks:
  allow_private_targets: true
  poll_interval: 0.1
  retry_schedule: [0.2, 0.5]
  subscriptions:
    - {{name: obs, url: "{receiver}", events: [invocation.completed], secret: "{secret}"}}
"""
HOOK_SECRET = "whsec_" + "b2JzZXJ2YWJpbGl0eS1zZWNyZXQtb2YtMzItYnl0ZXM="

MSG = [{"role": "user", "content": "observability"}]


async def start_receiver() -> tuple[web.AppRunner, str]:
    seen = [0]

    async def hook(request: web.Request) -> web.Response:
        await request.read()
        seen[0] += 1
        return web.Response(status=500 if seen[0] % 4 == 0 else 200)  # retries too

    app = web.Application()
    app.router.add_post("/hook", hook)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    return runner, f"http://127.0.0.1:{port}/hook"


async def start_gateway(tmp_path: Path, config: str = CONFIG, **fields: str) -> tuple[asyncio.subprocess.Process, int]:
    port = free_port()
    cfg = tmp_path / f"gateway-{port}.yaml"
    cfg.write_text(config.format(port=port, closed=free_port(), **fields))
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "proxy", "serve", "--config", str(cfg), cwd=tmp_path,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL)
    async with aiohttp.ClientSession() as s:
        for _ in range(300):
            try:
                async with s.get(f"http://127.0.0.1:{port}/healthz") as r:
                    if r.status == 200:
                        return proc, port
            except aiohttp.ClientError:
                await asyncio.sleep(0.1)
    proc.kill()
    raise RuntimeError("gateway did not start")


async def traffic_round(base: str) -> dict[str, int]:
    """One round of every kind of traffic; returns status counts by scenario for sanity checks."""
    seen: dict[str, int] = {}

    async def post(name: str, key: str, body: dict, headers: dict | None = None) -> None:  # type: ignore[type-arg]
        h = {"Authorization": f"Bearer {key}", **(headers or {})}
        async with aiohttp.ClientSession() as s, s.post(base + "/v1/chat/completions", json=body, headers=h) as r:
            await r.read()
            seen[f"{name}:{r.status}"] = seen.get(f"{name}:{r.status}", 0) + 1

    chat = {"model": "demo", "messages": MSG}
    for _ in range(3):
        await post("ok", "sk-obs", {**chat, "messages": [{"role": "user", "content": os.urandom(4).hex()}]})
    await post("cached", "sk-obs", chat)
    await post("cached", "sk-obs", chat)
    await post("stream", "sk-obs", {**chat, "stream": True, "messages": [{"role": "user", "content": "s"}],
                                    "stream_options": {"include_usage": True}})
    await post("notfound", "sk-obs", {**chat, "model": "no-such-alias"})
    await post("unpriced", "sk-obs", {**chat, "model": "local"})  # a local CLI model without a price
    await post("fallback", "sk-obs", {**chat, "model": "flaky"})
    await post("dead", "sk-obs", {**chat, "model": "dead"})
    await post("rule", "sk-obs", {**chat, "model": "dead"}, {"x-priority": "low"})
    for _ in range(4):
        await post("limited", "sk-limited", {**chat, "messages": [{"role": "user", "content": os.urandom(4).hex()}]})
    for _ in range(2):
        await post("broke", "sk-broke", {**chat, "messages": [{"role": "user", "content": os.urandom(4).hex()}]})
    await post("agent", "sk-obs", {"model": "agent/obs-agent", "messages": [{"role": "user", "content": os.urandom(4).hex()}]})
    await post("chain", "sk-obs", {"model": "chain/obs-chain", "messages": [{"role": "user", "content": os.urandom(4).hex()}]})
    await post("optimized", "sk-obs", {"model": "tidy", "messages": [{"role": "user", "content": "a    b  " + os.urandom(4).hex()}]})
    slow = {"model": "slowdemo", "messages": [{"role": "user", "content": os.urandom(4).hex()}]}
    await asyncio.gather(*(post("coalesced", "sk-obs", slow) for _ in range(4)))
    async with aiohttp.ClientSession() as s:
        async with s.post(base + "/v1/embeddings", json={"model": "demo", "input": "x"},
                          headers={"Authorization": "Bearer sk-obs"}) as r:
            seen[f"embeddings:{r.status}"] = 1
    return seen


async def hook_traffic(base: str) -> None:
    async with aiohttp.ClientSession() as s:
        for _ in range(4):
            async with s.post(base + "/v1/chat/completions", json={"model": "demo", "messages": MSG},
                              headers={"Authorization": "Bearer sk-hooks"}) as r:
                assert r.status == 200


async def test_every_panel_and_alert_has_data(tmp_path: Path) -> None:
    proc, port = await start_gateway(tmp_path)
    receiver, receiver_url = await start_receiver()
    hooks, hooks_port = await start_gateway(tmp_path, WEBHOOKS_CONFIG, tmp=str(tmp_path), receiver=receiver_url,
                                            secret=HOOK_SECRET)
    base = f"http://127.0.0.1:{port}"
    hooks_base = f"http://127.0.0.1:{hooks_port}"
    try:
        await hook_traffic(hooks_base)
        seen = await traffic_round(base)
        # the scenarios really happened (otherwise an empty panel could be the traffic's fault)
        for expected in ("ok:200", "cached:200", "stream:200", "notfound:404", "unpriced:200", "fallback:200", "dead:502",
                         "rule:200", "limited:200", "limited:429", "broke:200", "broke:429", "coalesced:200",
                         "embeddings:200", "agent:200", "chain:200", "optimized:200"):
            assert expected in seen, (expected, seen)
        prom = await asyncio.to_thread(start_prometheus, [f"127.0.0.1:{port}", f"127.0.0.1:{hooks_port}"], tmp_path,
                                       rule_files=[ALERTS])
        try:
            for _ in range(4):  # keep counters moving while Prometheus scrapes, so rate() has increases
                await asyncio.sleep(1.2)
                await traffic_round(base)
                await hook_traffic(hooks_base)
            await asyncio.to_thread(prom.wait_for_scrape, 5)
            empty = []
            for title, expr in dashboard_exprs() + alert_base_exprs():
                result = await asyncio.to_thread(prom.series, expr)
                if not result:
                    empty.append(f"{title}: {expr}")
            for name, _, query in variable_queries():
                if query.startswith("label_values(") and "," in query:
                    label = query.rsplit(",", 1)[1].rstrip(") ").strip()
                    if not await asyncio.to_thread(prom.label_values, label):
                        empty.append(f"variable {name}: {query}")
        finally:
            await asyncio.to_thread(prom.stop)
        assert not empty, "queries without data:\n" + "\n".join(empty)
    finally:
        for p in (proc, hooks):
            p.terminate()
            await p.wait()
        await receiver.cleanup()

