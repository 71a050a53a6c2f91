"""Feature benchmarks: what quotas, the response cache, metrics and provider translation cost.

    .venv/bin/python loadtests/feature_bench.py            # full run (~5 minutes), updates docs/benchmarks.md
    .venv/bin/python loadtests/feature_bench.py --quick    # ~2-3 minutes
    .venv/bin/python loadtests/feature_bench.py --only cache,metrics --no-docs

Same layout as loadtests/benchmark.py (whose helpers this reuses): the gateways under test are pinned
to core 0 and take the load one at a time in interleaved rounds (best round kept); the mock upstream and
wrk share core 1. Each section is written as its own `##` section of docs/benchmarks.md; every other
section there (`## Gateway core`, `## Resilience`, ...) is left as it is.

  quotas       non-stream req/s + CPU/request: quotas off vs a key with rpm+tpm+rpd limits and a budget,
               in-process and on Redis (a random DB 1..15, flushed afterwards); then the usage ledger at
               peak rate on SQLite and PostgreSQL (a fresh schema, dropped afterwards), sampling
               gateway_ledger_queue_depth every second.
  cache        p50 of a hit vs a miss (upstream latency 0.2 s); hit req/s vs cache off (zero-delay
               upstream); 100 identical concurrent requests against a 0.5 s upstream -> upstream calls.
  metrics      req/s + CPU/request with metrics on vs off; /metrics render time with 50 aliases x 200 keys.
  translation  CPU per streamed chunk: OpenAI pass-through vs Anthropic vs Gemini aliases (50 lorem
               tokens per stream); time to first chunk through each.

Only 127.0.0.1 is ever contacted; every child process is stopped when this script exits.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import random
import re
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from http.client import HTTPConnection
from pathlib import Path
from typing import Any

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))

from benchmark import (
    CORE_MOCK,
    DOCS,
    GATEWAY_KEY,
    HERE,
    HOST,
    MODEL,
    PYTHON,
    RESULTS,
    ROOT,
    UPSTREAM_KEY,
    Bench,
    Proc,
    Target,
    base_gateway_config,
    bench_key,
    check_local,
    configure_mock,
    deep_merge,
    free_port,
    http,
    machine_info,
    md_table,
    parse_tagged_json,
    raise_nofile,
    replace_section,
    running,
    start_mock,
    stop_all,
    wait_ready,
)

SECTIONS = ("quotas", "cache", "metrics", "translation")
HEADINGS = {"quotas": "## Quotas and budgets", "cache": "## Response cache", "metrics": "## Metrics",
            "translation": "## Provider translation"}
PG_URL = "postgresql://postgres@127.0.0.1:5432/test"

QUOTA_INPROC_MAX_COST = 0.10
QUOTA_REDIS_MAX_COST = 0.25
CACHE_HIT_MIN_SPEEDUP = 3.0
CACHE_HIT_MIN_RPS_RATIO = 0.80
METRICS_MAX_COST = 0.05
RENDER_MAX_MS = 50.0
TRANSLATION_MAX_RATIO = 1.15

LIMITS = {"rpm": 100_000_000, "tpm": 10_000_000_000, "rpd": 1_000_000_000}
BUDGET = {"usd": 1e9, "period": "monthly"}


def verdict(ok: bool | None) -> str:
    return "n/a" if ok is None else ("PASS" if ok else "FAIL")


def f(v: float | None, fmt: str = ".1f") -> str:
    return "-" if v is None else format(v, fmt)


class FeatureBench(Bench):
    """Bench with a model name for wrk and gateways built from a full config dict."""

    model = MODEL

    def run_wrk(self, url: str, key: str, conns: int, duration: int, stream: bool) -> dict[str, Any]:
        self._runs += 1
        script = HERE / "wrk" / ("chat_stream.lua" if stream else "chat.lua")
        import os

        proc = Proc("wrk", [self.wrk or "wrk", "-t1", f"-c{conns}", f"-d{duration}s", "--latency", "--timeout",
                            "10s", "-s", str(script), check_local(url)],
                    self.load_core, self.workdir / f"wrk-{self._runs}.log",
                    env={**os.environ, "GATEWAY_KEY": key, "GATEWAY_MODEL": self.model})
        with running(proc):
            rc = proc.wait(duration + 30)
        if rc != 0:
            raise RuntimeError(f"wrk failed ({rc}):\n{proc.tail()}")
        return parse_tagged_json(proc.output(), "WRK_JSON")

    def gateway(self, name: str, over: dict[str, Any]) -> Target:
        cfg = deep_merge(base_gateway_config(self.mock_url, self.workdir, name), over)
        path = self.workdir / f"gateway-{name}.yaml"
        path.write_text(yaml.safe_dump(cfg, sort_keys=False))
        port = free_port()
        proc = Proc(f"gateway[{name}]", [PYTHON, "-m", "proxy", "serve", "--config", str(path), "--host", HOST,
                                         "--port", str(port)], self.proxy_core, self.workdir / f"gateway-{name}.log")
        url = f"http://{HOST}:{port}"
        wait_ready(proc, url + "/healthz")
        return Target(name, url, GATEWAY_KEY, proc)

    def compare(self, section: str, targets: list[Target], duration: int, stream: bool = False) -> None:
        ready = self.prepare(targets, stream)
        self.rounds(section, ready, 50, duration, stream)


def stop_targets(targets: list[Target]) -> None:
    for t in targets:
        if t.proc:
            t.proc.stop()


def cost(base: dict[str, Any], other: dict[str, Any]) -> float | None:
    if not base.get("rps") or not other.get("rps"):
        return None
    return 1 - other["rps"] / base["rps"]


def scrape(url: str) -> dict[str, float]:
    """Un-labelled gateway_ledger_* samples from /metrics, plus the sum of gateway_requests_total."""
    _, _, data = http("GET", url + "/metrics", timeout=5)
    out = {"requests_served": 0.0}
    for line in data.decode().splitlines():
        if line.startswith("gateway_requests_total{"):
            out["requests_served"] += float(line.rsplit(" ", 1)[1])
        m = re.match(r"(gateway_ledger_\w+) ([0-9.eE+-]+)$", line)
        if m:
            out[m.group(1)] = float(m.group(2))
    return out


def post(url: str, body: dict[str, Any], key: str = GATEWAY_KEY, timeout: float = 30) -> tuple[int, float, bytes]:
    t0 = time.perf_counter()
    status, _, data = http("POST", url + "/v1/chat/completions", body, {"Authorization": f"Bearer {key}"},
                           timeout=timeout)
    return status, time.perf_counter() - t0, data


def ttfc(url: str, model: str, key: str, n: int) -> list[float]:
    """Time to the first `data:` line of n sequential streams (ms)."""
    host, port = url.split("//")[1].split(":")
    check_local(url)
    out = []
    body = json.dumps({"model": model, "stream": True,
                       "messages": [{"role": "user", "content": "Say something short."}]})
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


def stream_chunks(url: str, model: str) -> int:
    status, _, data = http("POST", url + "/v1/chat/completions",
                           {"model": model, "stream": True,
                            "messages": [{"role": "user", "content": "Say something short."}]},
                           {"Authorization": f"Bearer {GATEWAY_KEY}"})
    if status != 200:
        raise RuntimeError(f"stream probe {model}: {status} {data[:200]!r}")
    return sum(1 for ln in data.splitlines() if ln.startswith(b"data:") and b"[DONE]" not in ln)


# ------------------------------------------------------------------ sections
def section_quotas(b: FeatureBench, a: argparse.Namespace) -> dict[str, Any]:
    r: dict[str, Any] = {}
    db = random.randint(1, 15)
    redis_url = f"redis://127.0.0.1:6379/{db}"
    r["redis_db"] = db
    b.configure_mock(CORE_MOCK)
    quota_key = bench_key(limits=LIMITS, budget=BUDGET)
    targets = [b.gateway("quotas-off", {}),
               b.gateway("quotas-inproc", {"keys": [quota_key]}),
               b.gateway("quotas-redis", {"keys": [quota_key], "redis": {"url": redis_url}})]
    try:
        b.compare("core", targets, a.duration)
        for t in targets:
            r[t.name] = t.results.get("core", {}) | ({"error": t.results["error"]} if "error" in t.results else {})
    finally:
        stop_targets(targets)
        out = subprocess.run(["redis-cli", "-h", HOST, "-n", str(db), "dbsize"], capture_output=True, text=True,
                             timeout=10)
        r["redis_keys_before_flush"] = out.stdout.strip()
        subprocess.run(["redis-cli", "-h", HOST, "-n", str(db), "flushdb"], capture_output=True, timeout=10)
    base = r["quotas-off"]
    r["inproc_cost"], r["redis_cost"] = cost(base, r["quotas-inproc"]), cost(base, r["quotas-redis"])
    # ledger at peak rate
    schema = f"bench_{uuid.uuid4().hex[:10]}"
    psql = ["psql", "-h", HOST, "-U", "postgres", "-d", "test", "-v", "ON_ERROR_STOP=1", "-qAtc"]
    r["ledger"] = {}
    for backend in ("sqlite", "postgresql"):
        sqlite_path = b.workdir / "ledger-peak.db"
        if backend == "sqlite":
            url = f"sqlite:///{sqlite_path}"
        else:
            subprocess.run([*psql, f"CREATE SCHEMA {schema}"], check=True, capture_output=True, timeout=20)
            url = f"{PG_URL}?options=-csearch_path%3D{schema}"
        t = None
        try:
            t = b.gateway(f"ledger-{backend}", {"database": {"url": url}})
            r["ledger"][backend] = ledger_run(b, t, a.ledger_duration)
            time.sleep(2.5)  # one more flush interval, then count rows
            if backend == "sqlite":
                with sqlite3.connect(sqlite_path) as c:
                    r["ledger"][backend]["rows_in_db"] = c.execute("SELECT count(*) FROM usage").fetchone()[0]
            else:
                out = subprocess.run([*psql, f"SELECT count(*) FROM {schema}.usage"], capture_output=True,
                                     text=True, timeout=20)
                r["ledger"][backend]["rows_in_db"] = int(out.stdout.strip() or -1)
            r["ledger"][backend]["after_drain"] = scrape(t.url)
        except (RuntimeError, subprocess.CalledProcessError, OSError, ValueError) as err:
            r["ledger"].setdefault(backend, {})["error"] = str(err)[:500]
            b.log(f"  ledger {backend} failed: {err}")
        finally:
            if t and t.proc:
                t.proc.stop()
            if backend == "postgresql":
                subprocess.run([*psql, f"DROP SCHEMA IF EXISTS {schema} CASCADE"], capture_output=True, timeout=20)
    return r


def ledger_run(b: FeatureBench, t: Target, duration: int) -> dict[str, Any]:
    probe_ok = post(t.url, {"model": MODEL, "messages": [{"role": "user", "content": "hi"}]})[0] == 200
    samples: list[float] = []
    stop = threading.Event()

    def sampler() -> None:
        while not stop.wait(1.0):
            with contextlib.suppress(Exception):
                samples.append(scrape(t.url).get("gateway_ledger_queue_depth", -1))

    th = threading.Thread(target=sampler, daemon=True)
    b.log(f"  ledger: {t.name} at peak rate for {duration}s, sampling the queue depth every second")
    th.start()
    try:
        w = b.run_wrk(t.url + "/v1/chat/completions", t.key, 50, duration, False)
    finally:
        stop.set()
        th.join(5)
    end = scrape(t.url)
    served = w["requests"] + (1 if probe_ok else 0)
    half = samples[len(samples) // 2:] or [0]
    first = samples[:len(samples) // 2] or [0]
    return {"requests": served, "rps": w["requests"] / (w["duration_us"] / 1e6), "samples": samples,
            "max_depth": max(samples, default=None), "final_depth": samples[-1] if samples else None,
            "depth_at_end": end.get("gateway_ledger_queue_depth"),
            "written_at_end": end.get("gateway_ledger_written_rows_total"),
            "dropped": end.get("gateway_ledger_dropped_rows_total"),
            # growth: the second half's mean depth well above the first half's
            "growing": statistics.mean(half) > 2 * statistics.mean(first) + 200,
            "errors": w["status_errors"] + w["read_errors"] + w["timeouts"]}


def section_cache(b: FeatureBench, a: argparse.Namespace) -> dict[str, Any]:
    r: dict[str, Any] = {}
    on = b.gateway("cache-on", {"cache": {"enabled": True, "backend": "memory"}})
    off = b.gateway("cache-off", {})
    try:
        # hit vs miss p50, upstream 0.2 s
        b.configure_mock({**CORE_MOCK, "latency": 0.2})
        n_miss, n_hit = (8, 30) if a.quick else (20, 100)
        miss = []
        for _ in range(n_miss):
            body = {"model": MODEL, "messages": [{"role": "user", "content": f"miss {uuid.uuid4().hex}"}]}
            s, dt_, _ = post(on.url, body)
            if s == 200:
                miss.append(dt_ * 1000)
        hit_body = {"model": MODEL, "messages": [{"role": "user", "content": f"hit {uuid.uuid4().hex}"}]}
        post(on.url, hit_body)
        hit = []
        for _ in range(n_hit):
            s, dt_, _ = post(on.url, hit_body)
            if s == 200:
                hit.append(dt_ * 1000)
        r["miss_p50_ms"] = statistics.median(miss) if miss else None
        r["hit_p50_ms"] = statistics.median(hit) if hit else None
        r["speedup"] = r["miss_p50_ms"] / r["hit_p50_ms"] if miss and hit else None
        # 100 identical concurrent requests, upstream 0.5 s
        b.configure_mock({**CORE_MOCK, "latency": 0.5})
        body = {"model": MODEL, "messages": [{"role": "user", "content": f"herd {uuid.uuid4().hex}"}]}
        with ThreadPoolExecutor(100) as ex:
            res = list(ex.map(lambda _: post(on.url, body)[0], range(100)))
        _, _, st = http("GET", b.mock_url + "/_mock/stats")
        r["herd_statuses"] = dict(sorted({str(s): res.count(s) for s in set(res)}.items()))
        r["herd_upstream_calls"] = json.loads(st).get("total")
        # hit throughput vs cache off, zero-delay upstream
        b.configure_mock(CORE_MOCK)
        b.compare("core", [off, on], a.duration)
        r["cache-off"], r["cache-hit"] = off.results.get("core", {}), on.results.get("core", {})
        r["rps_ratio"] = (r["cache-hit"]["rps"] / r["cache-off"]["rps"]
                          if r["cache-off"].get("rps") and r["cache-hit"].get("rps") else None)
        _, hdrs, _ = http("POST", on.url + "/v1/chat/completions",
                          {"model": MODEL, "messages": [{"role": "user", "content": "Say something short."}]},
                          {"Authorization": f"Bearer {GATEWAY_KEY}"})
        r["hit_headers"] = {k: v for k, v in hdrs.items() if "cache" in k.lower()}
    finally:
        stop_targets([on, off])
        b.configure_mock(CORE_MOCK)
    return r


RENDER_SCRIPT = r"""
import json, statistics, sys, time
from proxy import metrics as m
ALL = sys.argv[1] == "all"
for i in range(50):
    alias = f"alias-{i:02d}"
    m.REQUEST_DURATION.labels(alias, "up", "2xx").observe(0.1)
    if ALL:
        m.TTFT.labels(alias, "up").observe(0.05)
        m.CACHE_HITS.labels(alias).inc()
        m.CACHE_MISSES.labels(alias).inc()
    for k in range(200):
        key = f"key-{k:03d}"
        m.REQUESTS.labels(alias, "up", "mock-1", key, "team", "2xx").inc()
        if not ALL:
            continue
        for typ in ("prompt", "completion", "cached"):
            m.TOKENS.labels(alias, "up", "mock-1", key, "team", typ).inc(10)
        m.COST.labels(alias, "up", "mock-1", key, "team").inc(0.001)
children = [c for fam in (m.REQUESTS, m.TOKENS, m.COST) for c in fam._metrics.values()]
t0 = time.perf_counter()
size = len(m.render())
cold = (time.perf_counter() - t0) * 1000
times, changed = [], []
for _ in range(5):  # nothing changed since the last scrape
    t0 = time.perf_counter()
    size = len(m.render())
    times.append((time.perf_counter() - t0) * 1000)
for _ in range(5):  # the worst case: every alias x key series changed since the last scrape
    for c in children:
        c.inc()
    t0 = time.perf_counter()
    size = len(m.render())
    changed.append((time.perf_counter() - t0) * 1000)
print("RENDER_JSON " + json.dumps({"times_ms": times, "median_ms": statistics.median(times), "bytes": size,
                                   "changed_ms": changed, "changed_median_ms": statistics.median(changed),
                                   "cold_ms": cold, "series": 50 * 200 * (5 if ALL else 1)}))
"""


def section_metrics(b: FeatureBench, a: argparse.Namespace) -> dict[str, Any]:
    r: dict[str, Any] = {}
    b.configure_mock(CORE_MOCK)
    targets = [b.gateway("metrics-on", {"metrics": {"enabled": True}}),
               b.gateway("metrics-off", {"metrics": {"enabled": False}})]
    try:
        b.compare("core", targets, a.duration)
        for t in targets:
            r[t.name] = t.results.get("core", {})
    finally:
        stop_targets(targets)
    r["cost"] = cost(r["metrics-off"], r["metrics-on"])
    for mode, k in (("all", "render"), ("requests", "render_requests_only")):
        proc = Proc("render", [PYTHON, "-c", RENDER_SCRIPT, mode], b.proxy_core, b.workdir / f"render-{mode}.log")
        with running(proc):
            rc = proc.wait(120)
        r[k] = {"error": proc.tail()} if rc != 0 else parse_tagged_json(proc.output(), "RENDER_JSON")
    return r


def section_translation(b: FeatureBench, a: argparse.Namespace) -> dict[str, Any]:
    r: dict[str, Any] = {}
    b.configure_mock({"reply": "lorem", "reply_tokens": 50, "tokens_per_s": 0.0})
    over = {"providers": {"anth": {"type": "anthropic", "base_url": b.mock_url + "/anthropic", "api_key": UPSTREAM_KEY},
                          "gem": {"type": "gemini", "base_url": b.mock_url, "api_key": UPSTREAM_KEY}},
            "models": {"openai": {"route": [{"provider": "up", "model": "mock-1"}]},
                       "anthropic": {"route": [{"provider": "anth", "model": "claude-mock"}]},
                       "gemini": {"route": [{"provider": "gem", "model": "gemini-mock"}]}}}
    gw = b.gateway("translation", over)
    aliases = ("openai", "anthropic", "gemini")
    try:
        chunks = {al: stream_chunks(gw.url, al) for al in aliases}
        r["chunks_per_stream"] = chunks
        # the same process takes each alias in turn: one Target per alias, interleaved rounds
        per: dict[str, list[dict[str, Any]]] = {al: [] for al in aliases}
        n = max(1, a.rounds)
        each = max(1, round(a.stream_duration / n))
        for al in aliases:  # warm-up
            b.model = al
            b.run_wrk(gw.url + "/v1/chat/completions", GATEWAY_KEY, 50, 1, True)
        for i in range(n):
            for al in aliases:
                b.model = al
                b.log(f"  translation round {i + 1}/{n}: {al} (50 conn, {each}s, stream)")
                per[al].append(b.load(gw, 50, each, stream=True))
        b.model = MODEL
        for al in aliases:
            best = min(per[al], key=lambda x: x["cpu_per_req_ms"])
            r[al] = {"rps": max(x["rps"] for x in per[al]), "cpu_per_stream_ms": best["cpu_per_req_ms"],
                     "cpu_per_chunk_us": best["cpu_per_req_ms"] * 1000 / max(1, chunks[al]),
                     "errors": sum(x["errors"] for x in per[al]), "p50_ms": min(x["p50_ms"] for x in per[al]),
                     "proxy_core_other": best["proxy_core_other"]}
        base = r["openai"]["cpu_per_chunk_us"]
        for al in aliases:
            r[al]["ratio"] = r[al]["cpu_per_chunk_us"] / base if base else None
        # TTFC: sequential streams, direct to the mock (OpenAI) and through each alias
        n_t = 20 if a.quick else 50
        d = ttfc(b.mock_url, "mock-1", UPSTREAM_KEY, n_t)
        r["ttfc_direct_p50_ms"] = statistics.median(d) if d else None
        for al in aliases:
            v = ttfc(gw.url, al, GATEWAY_KEY, n_t)
            r[al]["ttfc_p50_ms"] = statistics.median(v) if v else None
    finally:
        b.model = MODEL
        gw.proc and gw.proc.stop()
    return r


# ------------------------------------------------------------------ checks + markdown
def checks(name: str, r: dict[str, Any]) -> list[tuple[str, str, str, bool | None]]:
    out: list[tuple[str, str, str, bool | None]] = []
    if name == "quotas":
        for k, lim, label in (("inproc_cost", QUOTA_INPROC_MAX_COST, "in-process quotas + budget"),
                              ("redis_cost", QUOTA_REDIS_MAX_COST, "Redis quotas + budget")):
            v = r.get(k)
            out.append((f"{label}: req/s cost vs quotas off", "-" if v is None else f"{v:+.1%}", f"<= {lim:.0%}",
                        None if v is None else v <= lim))
        for be, lr in r.get("ledger", {}).items():
            if "error" in lr:
                out.append((f"ledger {be}: no queue growth", "error", "no growth", False))
                continue
            ok = not lr["growing"] and (lr["depth_at_end"] or 0) < 1000 and not lr.get("dropped")
            out.append((f"ledger {be}: no queue growth at {lr['rps']:.0f} req/s",
                        f"max {lr['max_depth']:.0f}, last sample {lr['final_depth']:.0f}; rows in DB "
                        f"{lr.get('rows_in_db', '-')} / gateway requests "
                        f"{f(lr.get('after_drain', {}).get('requests_served'), '.0f')}", "no growth", ok))
    elif name == "cache":
        v = r.get("speedup")
        out.append(("cache hit p50 vs miss p50 (upstream 0.2 s)", f"{f(v, '.1f')}x faster",
                    f">= {CACHE_HIT_MIN_SPEEDUP:.0f}x", None if v is None else v >= CACHE_HIT_MIN_SPEEDUP))
        v = r.get("rps_ratio")
        out.append(("cache-hit req/s vs cache off (zero-delay upstream)", "-" if v is None else f"{v:.0%}",
                    f">= {CACHE_HIT_MIN_RPS_RATIO:.0%}", None if v is None else v >= CACHE_HIT_MIN_RPS_RATIO))
        v = r.get("herd_upstream_calls")
        out.append(("100 identical concurrent requests (upstream 0.5 s): upstream calls", str(v), "exactly 1",
                    None if v is None else v == 1))
    elif name == "metrics":
        v = r.get("cost")
        out.append(("metrics on: req/s cost vs off", "-" if v is None else f"{v:+.1%}", f"<= {METRICS_MAX_COST:.0%}",
                    None if v is None else v <= METRICS_MAX_COST))
        # judged on the worst case: every alias x key series changed since the previous scrape
        v = r.get("render", {}).get("changed_median_ms")
        out.append(("/metrics render, 50 aliases x 200 keys, every series changed (median of 5)", f"{f(v)} ms",
                    f"< {RENDER_MAX_MS:.0f} ms", None if v is None else v < RENDER_MAX_MS))
        v = r.get("render", {}).get("median_ms")
        out.append(("/metrics render, 50 aliases x 200 keys, nothing changed (median of 5)", f"{f(v)} ms",
                    f"< {RENDER_MAX_MS:.0f} ms", None if v is None else v < RENDER_MAX_MS))
    elif name == "translation":
        for al in ("anthropic", "gemini"):
            v = r.get(al, {}).get("ratio")
            out.append((f"{al} CPU per chunk vs OpenAI pass-through", f"{f(v, '.2f')}x",
                        f"<= {TRANSLATION_MAX_RATIO:.2f}x", None if v is None else v <= TRANSLATION_MAX_RATIO))
    return out


def core_row(name: str, c: dict[str, Any], base: dict[str, Any] | None) -> list[str]:
    ratio = f"{c['rps'] / base['rps']:.2f}" if base and base.get("rps") and c.get("rps") else "-"
    cpu_ratio = (f"{c['cpu_per_req_ms'] / base['cpu_per_req_ms']:.2f}"
                 if base and base.get("cpu_per_req_ms") and c.get("cpu_per_req_ms") else "-")
    return [name, f(c.get("rps"), ".0f"), ratio, f(c.get("p50_ms"), ".1f"), f(c.get("p99_ms"), ".1f"),
            f(c.get("cpu_per_req_ms"), ".3f"), cpu_ratio, str(c.get("errors", "-")),
            f"{c['proxy_core_other']:.0%}" if c.get("proxy_core_other") is not None else "-"]


CORE_HEADER = ["gateway", "req/s", "req/s ratio", "p50 ms", "p99 ms", "CPU ms/req", "CPU ratio", "errors",
               "other load on proxy core"]


def body_md(name: str, r: dict[str, Any]) -> list[str]:
    L: list[str] = []
    if name == "quotas":
        base = r.get("quotas-off")
        L += ["### Throughput (wrk, 50 connections, non-stream)", "", md_table(CORE_HEADER, [
            core_row("quotas off", r.get("quotas-off", {}), base),
            core_row("rpm+tpm+rpd + budget, in-process", r.get("quotas-inproc", {}), base),
            core_row(f"rpm+tpm+rpd + budget, Redis (db {r.get('redis_db')})", r.get("quotas-redis", {}), base)]), "",
              f"Key limits: {LIMITS} (far above the load), budget {BUDGET}. Redis keys in the DB before it was "
              f"flushed: {r.get('redis_keys_before_flush', '-')}.", ""]
        rows = []
        for be, lr in r.get("ledger", {}).items():
            if "error" in lr:
                rows.append([be, "error: " + lr["error"][:120]] + ["-"] * 7)
                continue
            rows.append([be, f"{lr['rps']:.0f}", f"{lr['max_depth']:.0f}", f"{lr['final_depth']:.0f}",
                         str(lr["requests"]), f(lr.get("after_drain", {}).get("requests_served"), ".0f"),
                         f(lr.get("written_at_end"), ".0f"), str(lr.get("rows_in_db", "-")),
                         f(lr.get("dropped"), ".0f")])
        L += ["### Usage ledger at peak rate", "",
              f"The gateway (quotas off) under wrk at 50 connections for {r.get('ledger_duration')} s; "
              "`gateway_ledger_queue_depth` sampled from /metrics every second. Rows in DB counted ~2.5 s after "
              "the load (one more flush). \"wrk requests\" counts the answers wrk saw inside its window (+1 probe); "
              "\"gateway requests\" is the sum of `gateway_requests_total` after the drain (it also counts the up to "
              "50 requests in flight when wrk stopped).", "",
              md_table(["database", "req/s", "max queue depth", "last sampled depth", "wrk requests",
                        "gateway requests",
                        "rows written (metric, at end of load)", "rows in DB after drain", "dropped"], rows), ""]
    elif name == "cache":
        L += ["### Hit vs miss latency (sequential requests, mock upstream latency 0.2 s)", "",
              md_table(["", "p50 ms"], [["miss (unique prompt)", f(r.get("miss_p50_ms"))],
                                        ["hit (repeated prompt)", f(r.get("hit_p50_ms"))],
                                        ["speedup", f"{f(r.get('speedup'))}x"]]), ""]
        base = r.get("cache-off")
        L += ["### Cache-hit throughput (wrk, 50 connections, zero-delay upstream, identical requests)", "",
              md_table(CORE_HEADER, [core_row("cache off", r.get("cache-off", {}), base),
                                     core_row("cache on (all hits)", r.get("cache-hit", {}), base)]), "",
              f"Hit answer headers: `{r.get('hit_headers')}`.", "",
              "### Identical concurrent requests", "",
              f"100 identical concurrent requests (fresh prompt) against a 0.5 s upstream: "
              f"**{r.get('herd_upstream_calls')}** upstream call(s); client statuses {r.get('herd_statuses')}.", ""]
    elif name == "metrics":
        base = r.get("metrics-off")
        L += ["### Throughput (wrk, 50 connections, non-stream)", "",
              md_table(CORE_HEADER, [core_row("metrics off", r.get("metrics-off", {}), base),
                                     core_row("metrics on", r.get("metrics-on", {}), base)]), ""]
        rd = r.get("render", {})
        L += ["### /metrics render", "",
              "A separate Python process (pinned to core 0) fills the gateway's own prometheus metrics with 50 "
              "aliases x 200 keys (requests, 3 token types and cost per alias x key; histograms per alias), "
              "then times `proxy.metrics.render()`: once cold (building the per-series caches), 5 times with "
              "nothing changed in between, and 5 times after incrementing every alias x key series (the worst "
              "case of a scrape interval: every value's text is redone).", "",
              "The second row fills only `gateway_requests` (one series per alias x key) for scale.", "",
              md_table(["populated", "alias x key series", "body bytes", "cold ms", "unchanged: ms (5 runs)",
                        "median ms", "all changed: ms (5 runs)", "median ms"],
                       [[label, str(x.get("series", "-")), str(x.get("bytes", "-")), f(x.get("cold_ms")),
                         ", ".join(f"{t:.1f}" for t in x.get("times_ms", [])), f(x.get("median_ms")),
                         ", ".join(f"{t:.1f}" for t in x.get("changed_ms", [])), f(x.get("changed_median_ms"))]
                        for label, x in (("requests + 3 token types + cost", rd),
                                         ("requests only", r.get("render_requests_only", {})))]), ""]
    elif name == "translation":
        rows = []
        for al in ("openai", "anthropic", "gemini"):
            x = r.get(al, {})
            ttfc_over = (x["ttfc_p50_ms"] - r["ttfc_direct_p50_ms"]
                         if x.get("ttfc_p50_ms") is not None and r.get("ttfc_direct_p50_ms") is not None else None)
            rows.append([al, str(r.get("chunks_per_stream", {}).get(al, "-")), f(x.get("rps"), ".0f"),
                         f(x.get("cpu_per_stream_ms"), ".3f"), f(x.get("cpu_per_chunk_us"), ".1f"),
                         f(x.get("ratio"), ".2f"), f(x.get("ttfc_p50_ms"), ".2f"), f(ttfc_over, ".2f"),
                         str(x.get("errors", "-"))])
        L += ["### Streams (wrk, 50 connections, 50 lorem tokens per stream)", "",
              "One gateway with three aliases: `openai` (OpenAI provider, pass-through), `anthropic` (Anthropic "
              "provider: request and SSE events translated) and `gemini` (Gemini provider, translated), all on the "
              "mock upstream. Chunks per stream = `data:` events the gateway sends (without `[DONE]`). TTFC = "
              f"time to the first `data:` line over sequential streams, p50; direct to the mock (OpenAI format): "
              f"{f(r.get('ttfc_direct_p50_ms'), '.2f')} ms.", "",
              md_table(["alias", "chunks/stream", "streams/s", "CPU ms/stream", "CPU µs/chunk",
                        "CPU/chunk ratio to openai", "TTFC p50 ms", "TTFC overhead vs direct ms", "errors"], rows),
              ""]
    return L


def render_section(name: str, r: dict[str, Any], m: dict[str, Any], a: argparse.Namespace) -> str:
    cs = checks(name, r)
    lines = [HEADINGS[name], "",
             "_Written by `loadtests/feature_bench.py`; rerun it to refresh this section._", "",
             f"Date: {m['date']} · machine: {m['nproc']} CPUs, {m['cpu_model']}, Linux {m['kernel']} · Python "
             f"{m['python']}, aiohttp {m['aiohttp']} · commit {m['commit']} (plus uncommitted changes) · mode: "
             f"{'quick' if a.quick else 'full'} ({a.duration} s per configuration at 50 connections in {a.rounds} "
             "interleaved rounds, best round kept). The gateway under test is pinned to core 0; the mock "
             "upstream and wrk share core 1. CPU = the gateway process's utime+stime / requests. The response "
             "cache is off (the default) in every row except the Response cache section's `cache on` rows.", ""]
    lines += body_md(name, r)
    if "error" in r:
        lines += [f"Error: `{r['error'][:300]}`", ""]
    lines += ["### Targets", "", md_table(["target", "measured", "limit", "result"],
                                          [[w, v, lim, verdict(ok)] for w, v, lim, ok in cs]), ""]
    oks = [ok for *_, ok in cs]
    lines.append(f"Overall: **{'PASS' if oks and all(x is True for x in oks) else 'FAIL'}** "
                 f"({sum(x is True for x in oks)} pass, {sum(x is False for x in oks)} fail).")
    return "\n".join(lines) + "\n"


def write_docs(done: dict[str, dict[str, Any]], m: dict[str, Any], a: argparse.Namespace, path: Path = DOCS) -> None:
    doc = path.read_text() if path.exists() else "# Benchmarks\n\n"
    for name, r in done.items():
        doc = replace_section(doc, HEADINGS[name], render_section(name, r, m, a))
    path.write_text(doc)


# ------------------------------------------------------------------ main
RUNNERS = {"quotas": section_quotas, "cache": section_cache, "metrics": section_metrics,
           "translation": section_translation}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="short runs")
    p.add_argument("--only", default=",".join(SECTIONS), help=f"sections, comma-separated: {','.join(SECTIONS)}")
    p.add_argument("--duration", type=int, default=None, help="seconds of load per configuration (default 9; quick 4)")
    p.add_argument("--rounds", type=int, default=None, help="interleaved rounds (default 6; quick 2)")
    p.add_argument("--no-docs", action="store_true", help="do not update docs/benchmarks.md")
    args = p.parse_args(argv)
    args.only = [s.strip() for s in args.only.split(",") if s.strip()]
    if unknown := set(args.only) - set(SECTIONS):
        p.error(f"unknown sections: {', '.join(sorted(unknown))}")
    args.duration = args.duration or (4 if args.quick else 9)
    args.rounds = args.rounds or (2 if args.quick else 6)  # short rounds: see benchmark.py
    args.stream_duration = args.duration
    args.ledger_duration = 20 if args.quick else 60
    args.warmup = 1
    args.retry_budget = 4 if args.quick else 20
    return args


def main(argv: list[str] | None = None) -> int:
    a = parse_args(argv)
    signal.signal(signal.SIGTERM, lambda s, _f: (_ for _ in ()).throw(SystemExit(128 + s)))
    raise_nofile()
    m = machine_info()
    done: dict[str, dict[str, Any]] = {}
    try:
        with tempfile.TemporaryDirectory(prefix="gw-feature-") as tmp:
            b = FeatureBench(a, Path(tmp))
            b.mock, b.mock_url = start_mock(Path(tmp), b.load_core)
            with running(b.mock):
                for name in a.only:
                    b.log(f"== {name}")
                    t0 = time.monotonic()
                    try:
                        done[name] = RUNNERS[name](b, a)
                    except Exception as err:  # one broken section must not lose the others
                        b.log(f"  section {name} failed: {err!r}")
                        done[name] = {"error": repr(err)}
                    if name == "quotas":
                        done[name]["ledger_duration"] = a.ledger_duration
                    done[name]["wall_s"] = round(time.monotonic() - t0, 1)
                    configure_mock(b.mock_url, CORE_MOCK)
    finally:
        stop_all()
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / f"feature-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.write_text(json.dumps({"machine": m, "args": vars(a), "sections": done}, indent=1, default=str))
    for name, r in done.items():
        print(render_section(name, r, m, a))
    print(f"raw results: {out.relative_to(ROOT)}")
    if not a.no_docs:
        write_docs(done, m, a)
        print(f"updated {DOCS.relative_to(ROOT)}: {', '.join(HEADINGS[n] for n in done)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
