"""The real `gateway serve` process: startup, health, metrics, JSON logs, graceful shutdown."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
from pathlib import Path

import aiohttp
import orjson
import pytest

from tests.conftest import free_port

CONFIG = """
listen: {host: 127.0.0.1, port: 1, shutdown_timeout: 10s}
providers:
  mock: {type: mock, mock: {reply: lorem, reply_tokens: 10, tokens_per_s: 10}}
  fast: {type: mock}
  openai: {type: openai, api_key: "${NOPE_OPENAI_KEY}"}
models:
  demo: {route: [{provider: fast, model: mock-1}]}
  slow: {route: [{provider: mock, model: mock-1}]}
  gpt: {route: [{provider: openai, model: gpt-4o-mini}]}
keys:
  - {name: dev, key: sk-dev}
logging: {format: json}
"""


async def start(tmp_path: Path, *argv: str) -> tuple[asyncio.subprocess.Process, str, int]:
    cfg = tmp_path / "gateway.yaml"
    cfg.write_text(CONFIG)
    port = free_port()
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    env.pop("NOPE_OPENAI_KEY", None)
    proc = await asyncio.create_subprocess_exec(
        *argv, "--config", str(cfg), "--port", str(port), cwd=tmp_path, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    assert proc.stdout is not None
    banner = b""
    while b"live aliases" not in banner:
        line = await asyncio.wait_for(proc.stdout.readline(), 20)
        assert line, banner
        banner += line
    while True:  # the rest of the banner was printed in the same write
        try:
            line = await asyncio.wait_for(proc.stdout.readline(), 0.3)
        except TimeoutError:
            break
        if not line or line.startswith(b"{"):
            break
        banner += line
    deadline = time.monotonic() + 20
    async with aiohttp.ClientSession() as s:
        while True:
            try:
                async with s.get(f"http://127.0.0.1:{port}/healthz") as r:
                    if r.status == 200:
                        break
            except aiohttp.ClientError:
                assert time.monotonic() < deadline
                await asyncio.sleep(0.1)
    return proc, banner.decode(), port


@pytest.mark.parametrize("argv", [[".venv/bin/gateway", "serve"], [sys.executable, "-m", "proxy", "serve"]])
async def test_serve_banner_health_metrics_logs(tmp_path: Path, argv: list[str]) -> None:
    exe = argv[0] if argv[0] == sys.executable else str(Path(__file__).resolve().parents[2] / argv[0])
    proc, banner, port = await start(tmp_path, exe, *argv[1:])
    try:
        assert f"http://127.0.0.1:{port}" in banner
        assert "live aliases: demo, slow" in banner
        assert "provider 'openai' (openai) disabled: env var not set: NOPE_OPENAI_KEY" in banner
        base = f"http://127.0.0.1:{port}"
        async with aiohttp.ClientSession(headers={"Authorization": "Bearer sk-dev"}) as s:
            async with s.get(base + "/readyz") as r:
                assert r.status == 200 and (await r.json())["status"] == "ready"
            async with s.post(base + "/v1/chat/completions", headers={"x-request-id": "req-123"},
                              json={"model": "demo", "messages": [{"role": "user", "content": "hi"}]}) as r:
                assert r.status == 200 and r.headers["x-request-id"] == "req-123"
            async with s.post(base + "/v1/chat/completions", json={
                    "model": "slow", "stream": True, "messages": [{"role": "user", "content": "hi"}]}) as r:
                await r.read()
            async with s.get(base + "/metrics") as r:
                text = await r.text()
        assert 'gateway_requests_total{alias="demo",key="dev",provider="fast",status_class="2xx",team="",' \
               'upstream_model="mock-1"} 1.0' in text
        assert "gateway_request_duration_seconds_bucket" in text
        assert 'gateway_time_to_first_token_seconds_count{alias="slow",provider="mock"} 1.0' in text
    finally:
        proc.send_signal(signal.SIGTERM)
        out, _ = await asyncio.wait_for(proc.communicate(), 20)
    assert proc.returncode == 0
    lines = [orjson.loads(line) for line in out.splitlines() if line.startswith(b"{")]
    req = next(x for x in lines if x.get("request_id") == "req-123")
    assert req["key"] == "dev" and req["alias"] == "demo" and req["provider"] == "fast"
    assert req["status"] == 200 and req["prompt_tokens"] == 1 and "latency_ms" in req
    assert b"sk-dev" not in out  # the key's secret never reaches the logs


async def test_sigterm_lets_in_flight_stream_finish(tmp_path: Path) -> None:
    exe = str(Path(__file__).resolve().parents[2] / ".venv/bin/gateway")
    proc, _, port = await start(tmp_path, exe, "serve")
    async with aiohttp.ClientSession(headers={"Authorization": "Bearer sk-dev"}) as s:
        async with s.post(f"http://127.0.0.1:{port}/v1/chat/completions", json={
                "model": "slow", "stream": True, "messages": [{"role": "user", "content": "hi"}]}) as r:
            await r.content.readline()  # stream under way (10 tokens at 10/s: ~1 s)
            proc.send_signal(signal.SIGTERM)
            raw = await asyncio.wait_for(r.read(), 15)
    assert raw.endswith(b"data: [DONE]\n\n")
    await asyncio.wait_for(proc.wait(), 15)
    assert proc.returncode == 0


async def test_workers_share_port_and_aggregate_metrics(tmp_path: Path) -> None:
    exe = str(Path(__file__).resolve().parents[2] / ".venv/bin/gateway")
    proc, banner, port = await start(tmp_path, exe, "serve", "--workers", "2")
    assert "workers: 2" in banner
    base = f"http://127.0.0.1:{port}"
    try:
        async with aiohttp.ClientSession(headers={"Authorization": "Bearer sk-dev"}) as s:
            body = {"model": "demo", "messages": [{"role": "user", "content": "hi"}]}
            for _ in range(5):
                while True:  # the second worker may still be binding: retry refused connects only
                    try:
                        async with aiohttp.ClientSession(headers={"Authorization": "Bearer sk-dev"}) as fresh:
                            async with fresh.post(base + "/v1/chat/completions", json=body) as r:
                                assert r.status == 200
                        break
                    except aiohttp.ClientConnectionError:
                        await asyncio.sleep(0.1)
            text = ""
            for _ in range(3):  # whichever worker answers, the counts cover both
                async with s.get(base + "/metrics") as r:
                    text = await r.text()
        total = sum(float(x.rsplit(" ", 1)[1]) for x in text.splitlines()
                    if x.startswith('gateway_requests_total{alias="demo"'))
        assert total == 5.0, text
    finally:
        proc.send_signal(signal.SIGTERM)
        await asyncio.wait_for(proc.communicate(), 20)
    assert proc.returncode == 0
