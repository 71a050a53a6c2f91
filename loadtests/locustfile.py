"""Locust users for the gateway's chat completions, streamed and not.

    gateway mock-upstream --port 9000 --reply lorem --reply-tokens 20 &
    gateway serve --config gateway.yaml &            # with an alias routed to http://127.0.0.1:9000/v1
    GATEWAY_BASE_URL=http://127.0.0.1:8080/v1 GATEWAY_KEY=sk-gateway-dev GATEWAY_MODEL=demo \
        .venv/bin/locust -f loadtests/locustfile.py --headless -u 50 -r 10 -t 30s

Environment: GATEWAY_BASE_URL (default http://127.0.0.1:8080/v1), GATEWAY_KEY (default sk-gateway-dev),
GATEWAY_MODEL (default demo), GATEWAY_STREAM_WEIGHT (share of stream calls, 0..1, default 0.5).
Locust is for exploring (ramp-up, mixed traffic, its web UI); the figures in docs/benchmarks.md come
from benchmark.py, whose load generators use far less CPU per request.
"""

from __future__ import annotations

import os
import time

from locust import FastHttpUser, between, task

BASE_URL = os.environ.get("GATEWAY_BASE_URL", "http://127.0.0.1:8080/v1").rstrip("/")
KEY = os.environ.get("GATEWAY_KEY", "sk-gateway-dev")
MODEL = os.environ.get("GATEWAY_MODEL", "demo")
STREAM_WEIGHT = min(1.0, max(0.0, float(os.environ.get("GATEWAY_STREAM_WEIGHT", "0.5"))))
MESSAGES = [{"role": "user", "content": "Say something short."}]


class ChatUser(FastHttpUser):
    host = BASE_URL
    wait_time = between(0.0, 0.05)
    headers = {"Authorization": f"Bearer {KEY}", "Content-Type": "application/json"}

    @task(max(0, round(10 * (1 - STREAM_WEIGHT))) or 1)
    def chat(self) -> None:
        with self.client.post("/chat/completions", json={"model": MODEL, "messages": MESSAGES},
                              headers=self.headers, name="chat", catch_response=True) as resp:
            if resp.status_code != 200:
                resp.failure(f"status {resp.status_code}: {(resp.text or '')[:200]}")
            elif not (resp.json() or {}).get("choices"):
                resp.failure("no choices in the answer")

    @task(max(0, round(10 * STREAM_WEIGHT)) or 1)
    def chat_stream(self) -> None:
        t0 = time.perf_counter()
        with self.client.post("/chat/completions", json={"model": MODEL, "messages": MESSAGES, "stream": True},
                              headers=self.headers, name="chat stream", stream=True,
                              catch_response=True) as resp:
            if resp.status_code != 200:
                resp.failure(f"status {resp.status_code}")
                return
            first: float | None = None
            tail = b""
            # small reads: geventhttpclient's read(n) waits for n bytes, and the first event is ~200
            for data in resp.iter_content(chunk_size=64, decode_content=False):
                if first is None:
                    first = time.perf_counter() - t0
                tail = (tail + data)[-32:]
            # with stream=True locust timed the headers only; report the whole stream instead
            resp.request_meta["response_time"] = (time.perf_counter() - t0) * 1000
            if not tail.rstrip().endswith(b"data: [DONE]"):
                resp.failure("stream did not end with data: [DONE]")
                return
            resp.success()
        if first is not None:  # time to first chunk as its own entry in locust's statistics
            self.environment.events.request.fire(request_type="TTFC", name="chat stream: first chunk",
                                                 response_time=first * 1000, response_length=0,
                                                 exception=None, context={})
