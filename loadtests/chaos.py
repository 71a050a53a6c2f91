"""Chaos load test for retries, breakers and fallbacks; writes the `## Resilience` part of docs/benchmarks.md.

    .venv/bin/python loadtests/chaos.py              # ~2.5 min, updates docs/benchmarks.md
    .venv/bin/python loadtests/chaos.py --quick      # ~45 s, docs not updated
    .venv/bin/python loadtests/chaos.py --phase-seconds 5 --concurrency 8 --no-docs

Two mock upstream processes serve alias `smart` (strategy weighted, retry 3 attempts, breakers
8 failures / 2 s); its fallback `backup` is the gateway's in-process mock provider (always healthy).
(With 5 consecutive failures, a 30% error rate at ~3,000 attempts/s trips `flaky` every few
hundred attempts and the run mostly measures the fallback; 8 keeps it in rotation.)
Phases, each bounded in time and in requests:

  baseline   both upstreams healthy
  chaos      `flaky` fails 30% of calls with 500; half-way through, `dying` is killed (SIGKILL)
  one-dead   `flaky` healed, `dying` still dead: p50 once its breaker is open vs the baseline p50
  overhead   nothing failing: the machinery's CPU per request in-process (exact), and wrk against
             the gateway with the full executor vs a bare one-call executor (chaos_overhead.py)

Only 127.0.0.1 is contacted. The gateway is pinned to CPU 0, mocks and load generators to CPU 1.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import os
import re
import signal
import statistics
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import aiohttp
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from loadtests import chaos_overhead
from loadtests.bench import procs
from loadtests.bench.configs import DOCS, PYTHON, ROOT, UPSTREAM_KEY
from loadtests.bench.report import write_sections

HEADING = "## Resilience"
KEY = "sk-chaos"
MAX_ERROR_RATE, P50_TOLERANCE, MAX_OVERHEAD = 0.005, 0.10, 0.05
GATEWAY_CORE, LOAD_CORE = procs.pick_cores()


# ------------------------------------------------------------------ processes (127.0.0.1 only)
def start_mock(tmp: Path, name: str) -> tuple[procs.Proc, str]:
    return procs.start_mock(tmp, LOAD_CORE, name=name, args=("--reply-tokens", "20"))


def gateway_config(tmp: Path, upstreams: dict[str, str]) -> dict[str, Any]:
    timeout = {"connect": "1s", "first_token": "5s", "idle": "5s", "total": "10s"}
    providers: dict[str, Any] = {n: {"type": "openai", "base_url": u + "/v1", "api_key": UPSTREAM_KEY,
                                     "timeout": timeout} for n, u in upstreams.items()}
    providers["local"] = {"type": "mock", "mock": {"reply": "lorem", "reply_tokens": 20}}
    return {
        "providers": providers,
        "models": {
            "smart": {"strategy": "weighted", "route": [{"provider": n, "model": "chaos-1"} for n in upstreams],
                      "retry": {"attempts": 3, "backoff": "20ms", "backoff_max": "200ms"}, "fallbacks": ["backup"]},
            "backup": {"route": [{"provider": "local", "model": "backup-1"}]},
            "bench": {"route": [{"provider": next(iter(upstreams)), "model": "bench-1"}]},
        },
        "keys": [{"name": "chaos", "key": KEY}],
        "breaker": {"failure_threshold": 8, "reset_timeout": "2s"},
        "logging": {"requests": False},
        "cache": {"enabled": False},
        "database": {"url": f"sqlite:///{tmp}/ledger.db"},
    }


def start_gateway(tmp: Path, cfg: dict[str, Any], bare: bool = False) -> tuple[procs.Proc, str]:
    """This script in its --serve mode (chaos_overhead.serve), so that --bare can swap the executor."""
    port = procs.free_port()
    path = tmp / f"gateway-{port}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    argv = [PYTHON, str(Path(__file__).resolve()), "--serve", str(path), "--port", str(port)]
    return procs.start_server("gateway[bare]" if bare else "gateway", argv + (["--bare"] if bare else []),
                              GATEWAY_CORE, tmp / f"gateway-{port}.log", port, "/healthz")


# ------------------------------------------------------------------ load
class Phase:
    def __init__(self, name: str) -> None:
        self.name = name
        self.latencies: list[float] = []
        self.errors: Counter[str] = Counter()
        self.attempts: Counter[int] = Counter()
        self.fallbacks = 0
        self.seconds = 0.0

    @property
    def n(self) -> int:
        return len(self.latencies) + sum(self.errors.values())

    def summary(self) -> dict[str, Any]:
        lat = sorted(self.latencies) or [0.0]
        errors = sum(self.errors.values())
        return {"phase": self.name, "requests": self.n, "errors": errors,
                "error_rate": errors / self.n if self.n else 0.0, "rps": self.n / self.seconds if self.seconds else 0,
                "p50_ms": statistics.median(lat) * 1000, "p99_ms": lat[int(0.99 * (len(lat) - 1))] * 1000,
                "retried": sum(c for a, c in self.attempts.items() if a > 1), "fallbacks": self.fallbacks,
                "error_kinds": dict(self.errors)}


async def load(session: aiohttp.ClientSession, url: str, phase: Phase, seconds: float, concurrency: int,
               max_requests: int, at: dict[float, Any] | None = None) -> Phase:
    """`concurrency` workers for `seconds` (or `max_requests`); `at` = {seconds: callback} events."""
    body = json.dumps({"model": "smart", "messages": [{"role": "user", "content": "Say something short."}]})
    headers = {"Authorization": f"Bearer {KEY}", "Content-Type": "application/json"}
    t0 = time.monotonic()
    end = t0 + seconds

    async def worker() -> None:
        while time.monotonic() < end and phase.n < max_requests:
            s = time.monotonic()
            try:
                async with session.post(url + "/v1/chat/completions", data=body, headers=headers) as r:
                    data = await r.read()
                    if r.status != 200:
                        phase.errors[f"{r.status} {json.loads(data)['error'].get('code')}"] += 1
                        continue
                    phase.attempts[int(r.headers.get("x-gateway-attempts", "1"))] += 1
                    phase.fallbacks += "x-gateway-fallback" in r.headers
            except (aiohttp.ClientError, OSError, ValueError) as err:
                phase.errors[type(err).__name__] += 1
                continue
            phase.latencies.append(time.monotonic() - s)

    async def events() -> None:
        for when, fn in sorted((at or {}).items()):
            await asyncio.sleep(max(0.0, t0 + when - time.monotonic()))
            fn()

    ev = asyncio.ensure_future(events())
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    ev.cancel()
    phase.seconds = time.monotonic() - t0
    return phase


async def mock_config(session: aiohttp.ClientSession, mock_url: str, **behaviour: Any) -> None:
    async with session.post(mock_url + "/_mock/config", json=behaviour) as r:
        r.raise_for_status()


async def breaker_states(session: aiohttp.ClientSession, gw_url: str) -> dict[str, str]:
    async with session.get(gw_url + "/metrics") as r:
        text = await r.text()
    names = {0.0: "closed", 1.0: "open", 2.0: "half-open"}
    found = re.findall(r'gateway_circuit_breaker_state\{provider="([^"]+)",upstream_model="([^"]+)"\} (\S+)', text)
    return {f"{p}/{m}": names.get(float(v), v) for p, m, v in found}


# ------------------------------------------------------------------ run
async def run(args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    flaky, flaky_url = start_mock(tmp, "flaky")
    dying, dying_url = start_mock(tmp, "dying")
    cfg = gateway_config(tmp, {"flaky": flaky_url, "dying": dying_url})
    gw, gw_url = start_gateway(tmp, cfg)
    conn = aiohttp.TCPConnector(limit=args.concurrency * 2)
    out: dict[str, Any] = {"when": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"), "cpus": os.cpu_count(),
                           "concurrency": args.concurrency, "phase_seconds": args.phase_seconds}
    async with aiohttp.ClientSession(connector=conn, timeout=aiohttp.ClientTimeout(total=30)) as s:
        sec, c, cap = args.phase_seconds, args.concurrency, args.max_requests
        await load(s, gw_url, Phase("warm-up"), 3, c, cap)
        lc = args.latency_concurrency
        base = await load(s, gw_url, Phase("baseline: both healthy"), sec, c, cap)
        print(json.dumps(base.summary()), flush=True)
        # p50 at low concurrency: no upstream saturates, so it shows the gateway's path and nothing else
        # (at full load one surviving mock process serves twice the traffic and queues)
        base_lat = await load(s, gw_url, Phase(f"baseline latency, {lc} clients"), sec / 2, lc, cap)
        await mock_config(s, flaky_url, error_status=500, error_rate=0.3)
        chaos = await load(s, gw_url, Phase("chaos: flaky 30% 500s, dying killed half-way"), 2 * sec, c, 2 * cap,
                           at={sec: lambda: dying.stop(sig=signal.SIGKILL)})
        print(json.dumps(chaos.summary()), flush=True)
        await mock_config(s, flaky_url, error_status=None, error_rate=0.0)
        # settle: flaky's breaker may still be open from the chaos phase; wait for its probe to close it
        for _ in range(20):
            await load(s, gw_url, Phase("settle"), 0.5, c, cap)
            states = await breaker_states(s, gw_url)
            if states.get("flaky/chaos-1") == "closed" and states.get("dying/chaos-1") == "open":
                break
        dead = await load(s, gw_url, Phase("one dead: flaky healed, dying down"), sec, c, cap)
        print(json.dumps(dead.summary()), flush=True)
        dead_lat = await load(s, gw_url, Phase(f"one dead latency, {lc} clients"), sec / 2, lc, cap)
        out["breakers_after"] = await breaker_states(s, gw_url)
        out["phases"] = [p.summary() for p in (base, base_lat, chaos, dead, dead_lat)]
    gw.stop()
    flaky.stop()
    out["config"] = cfg
    return out


def render(r: dict[str, Any]) -> str:
    _, base, chaos, _, dead = r["phases"]
    lines = [HEADING, "", f"`loadtests/chaos.py`, {r['when']}, {r['cpus']} CPUs, {r['concurrency']} concurrent "
             f"clients, {r['phase_seconds']} s phases. Alias `smart` = two mock upstream processes (weighted, 3 "
             "attempts, breaker 8 failures / 2 s), fallback `backup` = in-process mock; response cache off.", "",
             "| phase | requests | req/s | client errors | error rate | p50 ms | p99 ms | retried | fallbacks |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for p in r["phases"]:
        lines.append(f"| {p['phase']} | {p['requests']} | {p['rps']:.0f} | {p['errors']} | {p['error_rate']:.3%} "
                     f"| {p['p50_ms']:.2f} | {p['p99_ms']:.2f} | {p['retried']} | {p['fallbacks']} |")
    lines += ["", "Breakers after the run: " + ", ".join(f"`{k}` {v}" for k, v in sorted(r["breakers_after"].items()))]
    checks = [("client error rate with a healthy fallback", f"{chaos['error_rate']:.3%}", f"< {MAX_ERROR_RATE:.1%}",
               chaos["error_rate"] < MAX_ERROR_RATE),
              ("p50 with one of two deployments dead (breaker open) vs both healthy",
               f"{dead['p50_ms'] / base['p50_ms'] - 1:+.1%}",
               f"<= +{P50_TOLERANCE:.0%}", dead["p50_ms"] <= base["p50_ms"] * (1 + P50_TOLERANCE))]
    if r.get("overhead"):
        o = r["overhead"]
        runs = len(o["runs"]["full"])
        lines += ["", f"Overhead, nothing failing (wrk -c50, non-stream, {runs} alternating runs each, medians): "
                  "full executor "
                  f"{o['full_rps']:.0f} req/s at {o['full_cpu_us']:.0f} us gateway CPU per request; bare one-call "
                  f"executor (what the gateway had before) {o['bare_rps']:.0f} req/s at {o['bare_cpu_us']:.0f} us. "
                  "The cost is measured on CPU per request, which bounds CPU-bound throughput and is what "
                  "other load on a shared machine disturbs least."]
        mu = o["micro"]
        share = mu["delta_us"] / o["full_cpu_us"]
        lines += ["", f"In-process, the executor costs {mu['full_us']:.2f} us per request against "
                  f"{mu['bare_us']:.2f} us for a bare call to an instant provider: the machinery adds "
                  f"{mu['delta_us']:.2f} us, {share:.2%} of the {o['full_cpu_us']:.0f} us a whole request costs."]
        checks.append(("throughput cost of routing + breaker + retry (in-process, exact)", f"{share:.2%}",
                       f"<= {MAX_OVERHEAD:.0%}", share <= MAX_OVERHEAD))
        # informational: on a shared 2-CPU machine run-to-run noise of this A/B is larger than 5%
        checks.append(("the same, end to end A/B on CPU per request (informational)", f"{o['cost']:+.1%}",
                       f"<= {MAX_OVERHEAD:.0%}", None))
    lines += ["", "| target | measured | limit | ok |", "|---|---:|---:|:---:|"]
    lines += [f"| {n} | {v} | {lim} | {'-' if ok is None else 'yes' if ok else '**no**'} |" for n, v, lim, ok in checks]
    r["checks"] = [{"target": n, "measured": v, "ok": ok} for n, v, _, ok in checks]
    return "\n".join(lines) + "\n"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--phase-seconds", type=float, default=10.0)
    ap.add_argument("--concurrency", type=int, default=16)
    ap.add_argument("--latency-concurrency", type=int, default=2, help="clients of the p50 comparison")
    ap.add_argument("--max-requests", type=int, default=100_000, help="per phase")
    ap.add_argument("--rounds", type=int, default=8, help="overhead: alternating full/bare wrk runs")
    ap.add_argument("--wrk-seconds", type=int, default=3)
    ap.add_argument("--skip-overhead", action="store_true")
    ap.add_argument("--quick", action="store_true", help="short phases, no docs update")
    ap.add_argument("--no-docs", action="store_true")
    ap.add_argument("--serve", help=argparse.SUPPRESS)
    ap.add_argument("--port", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--bare", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.serve:
        return chaos_overhead.serve(args.serve, args.port, args.bare)
    if args.quick:
        args.phase_seconds, args.rounds, args.wrk_seconds, args.no_docs = 4.0, 2, 3, True
    procs.exit_on_signals()
    try:
        with tempfile.TemporaryDirectory(prefix="gw-chaos-") as tmp:
            r = asyncio.run(run(args, Path(tmp)))
            r["overhead"] = None if args.skip_overhead else chaos_overhead.overhead(
                Path(tmp), r.pop("config"), args, sys.modules[__name__])
    finally:
        procs.stop_all()
    section = render(r)
    print(section)
    if not args.no_docs:
        write_sections({HEADING: section})
        print(f"updated {DOCS.relative_to(ROOT)} section {HEADING!r}")
    return 0 if all(c["ok"] is not False for c in r["checks"]) else 1


if __name__ == "__main__":
    sys.exit(main())
