"""HTTP to 127.0.0.1 and nowhere else: requests, probes, time to first chunk."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.parse
import urllib.request
from http.client import HTTPConnection
from typing import Any

from .configs import GATEWAY_KEY, HOST, MODEL

_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # ignore http_proxy env vars


def check_local(url: str) -> str:
    if urllib.parse.urlsplit(url).hostname != HOST:
        raise ValueError(f"refusing to send traffic anywhere but {HOST}: {url}")
    return url


def http(method: str, url: str, body: Any = None, headers: dict[str, str] | None = None,
         timeout: float = 10.0) -> tuple[int, dict[str, str], bytes]:
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(check_local(url), data=data, method=method,
                                 headers={"Content-Type": "application/json", **(headers or {})})
    try:
        with _OPENER.open(req, timeout=timeout) as r:
            return r.status, dict(r.headers), r.read()
    except urllib.error.HTTPError as err:
        return err.code, dict(err.headers), err.read()


def chat_body(stream: bool = False, model: str = MODEL) -> dict[str, Any]:
    body: dict[str, Any] = {"model": model, "messages": [{"role": "user", "content": "Say something short."}]}
    if stream:
        body["stream"] = True
    return body


def probe(url: str, key: str, stream: bool = False) -> dict[str, str]:
    """One request before the load; raise unless it answers 200. Returns the response headers."""
    status, headers, data = http("POST", url, chat_body(stream), {"Authorization": f"Bearer {key}"})
    if status != 200 or (stream and b"[DONE]" not in data):
        raise RuntimeError(f"probe of {url} answered {status}: {data[:300]!r}")
    return headers


def post(url: str, body: dict[str, Any], key: str = GATEWAY_KEY, timeout: float = 30) -> tuple[int, float, bytes]:
    """A chat completion to the server at `url`: (status, seconds, body)."""
    t0 = time.perf_counter()
    status, _, data = http("POST", url + "/v1/chat/completions", body, {"Authorization": f"Bearer {key}"},
                           timeout=timeout)
    return status, time.perf_counter() - t0, data


def stream_chunks(url: str, model: str) -> int:
    """`data:` events (without [DONE]) of one stream through the gateway at `url`."""
    status, _, data = http("POST", url + "/v1/chat/completions", chat_body(True, model),
                           {"Authorization": f"Bearer {GATEWAY_KEY}"})
    if status != 200:
        raise RuntimeError(f"stream probe {model}: {status} {data[:200]!r}")
    return sum(1 for ln in data.splitlines() if ln.startswith(b"data:") and b"[DONE]" not in ln)


def ttfc(url: str, model: str, key: str, n: int) -> list[float]:
    """Time to the first `data:` line of n sequential streams (ms)."""
    host, port = url.split("//")[1].split(":")
    check_local(url)
    out = []
    body = json.dumps(chat_body(True, model))
    conn = HTTPConnection(host, int(port), timeout=10)
    for _ in range(n):
        t0 = time.perf_counter()
        conn.request("POST", "/v1/chat/completions", body, {"Authorization": f"Bearer {key}",
                                                              "Content-Type": "application/json"})
        r = conn.getresponse()
        first = None
        while True:
            line = r.readline()
            if not line:
                break
            if first is None and line.startswith(b"data:"):
                first = (time.perf_counter() - t0) * 1000
        r.close()
        if r.status == 200 and first is not None:
            out.append(first)
    conn.close()
    return out
