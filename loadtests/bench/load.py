"""Load runs: wrk (throughput, latency), the concurrent-stream clients, interleaved rounds, py-spy profiles.

Each run is pinned to the load core; what the proxy spent meanwhile comes from cpu.Snapshot.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import time
import urllib.parse
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .configs import CORE_MOCK, HERE, HOST, MODEL, PYTHON, RESULTS, ROOT, STREAM_MOCK, Variant
from .cpu import NOISY, Snapshot, listen_overflows, usage_between
from .net import check_local, probe
from .procs import Proc, configure_mock, pick_cores, running


def parse_tagged_json(text: str, tag: str) -> dict[str, Any]:
    for line in text.splitlines():
        if line.startswith(tag + " "):
            return dict(json.loads(line[len(tag) + 1:]))
    raise ValueError(f"no {tag} line in:\n{text[-2000:]}")


def run_wrk(url: str, key: str, conns: int, duration: int, stream: bool, core: int | None, log: Path,
            model: str = MODEL) -> dict[str, Any]:
    """One wrk run (loadtests/wrk/chat*.lua) pinned to `core`: the WRK_JSON line it prints."""
    wrk = shutil.which("wrk")
    if not wrk:
        raise RuntimeError("wrk not found: run `bash scripts/install-system-deps.sh bench`")
    script = HERE / "wrk" / ("chat_stream.lua" if stream else "chat.lua")
    proc = Proc("wrk", [wrk, "-t1", f"-c{conns}", f"-d{duration}s", "--latency", "--timeout", "10s",
                        "-s", str(script), check_local(url)],
                core, log, env={**os.environ, "GATEWAY_KEY": key, "GATEWAY_MODEL": model})
    with running(proc):
        rc = proc.wait(duration + 30)
    if rc != 0:
        raise RuntimeError(f"wrk failed ({rc}):\n{proc.tail()}")
    return parse_tagged_json(proc.output(), "WRK_JSON")


@dataclass
class Target:
    """Somewhere to send the load: the mock itself, the baseline, or a gateway variant."""

    name: str
    url: str
    key: str
    proc: Proc | None  # the proxy process whose CPU and memory are measured (None: direct to the mock)
    variant: Variant | None = None
    results: dict[str, Any] = field(default_factory=dict)


def aggregate(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    """Best of the interleaved rounds: other work on the shared machine only ever makes a round worse
    (fewer req/s, more CPU per request through cache and scheduler interference, higher latency), so
    the best round is the least disturbed one. Every round is kept in `rounds` for the raw results."""
    out: dict[str, Any] = {"rounds": rounds, "requests": sum(r["requests"] for r in rounds),
                           "errors": sum(r["errors"] for r in rounds), "connections": rounds[0]["connections"]}
    for k, best in (("rps", max), ("p50_ms", min), ("p90_ms", min), ("p99_ms", min), ("cpu_per_req_ms", min),
                    ("mock_cpu_per_req_ms", min), ("proxy_core_other", min), ("load_core_busy", statistics.median),
                    ("proxy_core_busy", statistics.median)):
        vals = [r[k] for r in rounds if r.get(k) is not None]
        out[k] = best(vals) if vals else None
    out["proxy_core_other_max"] = max((r["proxy_core_other"] for r in rounds
                                       if r.get("proxy_core_other") is not None), default=None)
    for k in ("rss_mib", "hwm_mib"):
        if k in rounds[-1]:
            out[k] = rounds[-1][k]
    return out


class Bench:
    """One run's load driver: the mock upstream, the cores, and the measured runs against targets.

    `model` is the alias wrk asks for (feature_bench's translation section switches it per alias)."""

    def __init__(self, args: argparse.Namespace, workdir: Path) -> None:
        self.args = args
        self.workdir = workdir
        self.proxy_core, self.load_core = pick_cores()
        self.mock: Proc | None = None
        self.mock_url = ""
        self.model = MODEL
        self._runs = 0
        self._sseload: list[str] | None = None

    def log(self, msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    def configure_mock(self, behaviour: dict[str, Any]) -> None:
        configure_mock(self.mock_url, behaviour)

    def run_wrk(self, url: str, key: str, conns: int, duration: int, stream: bool) -> dict[str, Any]:
        self._runs += 1
        return run_wrk(url, key, conns, duration, stream, self.load_core, self.workdir / f"wrk-{self._runs}.log",
                       self.model)

    def load(self, t: Target, conns: int, duration: int, stream: bool = False) -> dict[str, Any]:
        """One measured wrk run: throughput, latency, the proxy's CPU per request, its memory."""
        assert self.mock is not None
        before = Snapshot.take(t.proc, self.mock)
        w = self.run_wrk(t.url + "/v1/chat/completions", t.key, conns, duration, stream)
        after = Snapshot.take(t.proc, self.mock)
        n = max(1, w["requests"])
        errors = w["status_errors"] + w["connect_errors"] + w["read_errors"] + w["write_errors"] + w["timeouts"]
        use = usage_between(before, after, self.proxy_core if t.proc else None, self.load_core)
        out = {"connections": conns, "duration_s": w["duration_us"] / 1e6, "requests": w["requests"],
               "rps": w["requests"] / (w["duration_us"] / 1e6), "p50_ms": w["p50_us"] / 1000,
               "p90_ms": w["p90_us"] / 1000, "p99_ms": w["p99_us"] / 1000, "errors": errors,
               "cpu_per_req_ms": use["proxy_cpu_s"] / n * 1000 if t.proc else None,
               "mock_cpu_per_req_ms": use["mock_cpu_s"] / n * 1000, **use}
        if t.proc:
            out["rss_mib"], out["hwm_mib"] = t.proc.memory_mib()
        return out

    def rounds(self, section: str, targets: list[Target], conns: int, total: int, stream: bool = False) -> None:
        """`total` seconds per target, cut into interleaved rounds (t1 t2 t3 t1 t2 t3 ...). A proxy none
        of whose rounds was quiet (other load on its core above NOISY) gets extra rounds, within a bounded
        time budget, so that its best round is a clean one when the machine allows."""
        n = max(1, self.args.rounds)
        each = max(1, round(total / n))
        per: dict[str, list[dict[str, Any]]] = {t.name: [] for t in targets}

        def one(t: Target, label: str) -> None:
            self.log(f"  {section} {label}: {t.name} ({conns} conn, {each}s)")
            try:
                per[t.name].append(self.load(t, conns, each, stream))
            except RuntimeError as err:
                t.results["error"] = f"{section}: {err}"
                self.log(f"    failed: {err}")

        for i in range(n):
            for t in targets:
                if not t.results.get("error"):
                    one(t, f"round {i + 1}/{n}")
        budget = self.args.retry_budget  # seconds of extra rounds for this section
        for _ in range(n):
            noisy = [t for t in targets if t.proc and per[t.name] and not t.results.get("error")
                     and min(r["proxy_core_other"] or 0.0 for r in per[t.name]) > NOISY]
            if not noisy or budget < each:
                break
            for t in noisy:
                if budget >= each:
                    budget -= each
                    one(t, "extra round (the others were noisy)")
        for t in targets:
            if per[t.name]:
                t.results[section] = aggregate(per[t.name])

    def prepare(self, targets: list[Target], stream: bool) -> list[Target]:
        """Probe (must answer 200) and warm up each target; the ones that fail are marked and dropped."""
        ok = []
        for t in targets:
            if t.results.get("error"):
                continue
            try:
                probe(t.url + "/v1/chat/completions", t.key, stream)
                if self.args.warmup:
                    self.run_wrk(t.url + "/v1/chat/completions", t.key, 50, self.args.warmup, stream)
                ok.append(t)
            except RuntimeError as err:
                t.results["error"] = str(err)
                self.log(f"  {t.name} failed: {err}")
        return ok

    def stream_client(self) -> list[str]:
        """The compiled stream client (loadtests/sseload.c, built once per run), else streamclient.py."""
        if self._sseload is None:
            cc = shutil.which("cc") or shutil.which("gcc")
            exe = self.workdir / "sseload"
            built = cc and subprocess.run([cc, "-O2", "-o", str(exe), str(HERE / "sseload.c"), "-lm"],
                                          capture_output=True).returncode == 0
            self._sseload = [str(exe)] if built else []
            if not built:
                self.log("  no C compiler: the concurrent streams use the asyncio client (it saturates first)")
        return self._sseload or [PYTHON, str(HERE / "streamclient.py")]

    def concurrent_streams(self, t: Target, streams: int) -> dict[str, Any]:
        a = self.args
        assert self.mock is not None
        self._runs += 1
        self.log(f"  concurrent: {t.name}: {streams} streams ({a.stream_tokens} tokens at 10/s), ramp {a.ramp}s,"
                 " 2 rounds")
        url = urllib.parse.urlsplit(check_local(t.url))
        client = self.stream_client()
        target = (["--host", url.hostname or HOST, "--port", str(url.port)] if client[0].endswith("sseload")
                  else ["--url", t.url + "/v1/chat/completions"])
        proc = Proc("streamclient", [*client, *target, "--key", t.key, "--model", MODEL,
                                     "--streams", str(streams), "--ramp", str(a.ramp), "--rounds", "2"],
                    self.load_core, self.workdir / f"streamclient-{self._runs}.log")
        before, overflows = Snapshot.take(t.proc, self.mock), listen_overflows()
        with running(proc):
            rc = proc.wait(120)
        after = Snapshot.take(t.proc, self.mock)
        if rc != 0:
            raise RuntimeError(f"streamclient failed ({rc}):\n{proc.tail()}")
        out = parse_tagged_json(proc.output(), "STREAMS_JSON") | {"streams": streams}
        use = usage_between(before, after, self.proxy_core if t.proc else None, self.load_core)
        out |= use | {"listen_overflows": listen_overflows() - overflows}
        if t.proc:
            out["cpu_per_stream_ms"] = use["proxy_cpu_s"] / (2 * streams) * 1000
            out["rss_mib"], out["hwm_mib"] = t.proc.memory_mib()
        return out

    def profile(self, t: Target, stream: bool) -> dict[str, Any]:
        """An extra, unmeasured load run with py-spy attached; collapsed stacks + a top list."""
        assert t.proc is not None
        pyspy = shutil.which("py-spy") or str(Path(PYTHON).parent / "py-spy")
        if not Path(pyspy).exists():
            raise RuntimeError("py-spy not found: .venv/bin/pip install py-spy")
        self.configure_mock(STREAM_MOCK if stream else CORE_MOCK)
        RESULTS.mkdir(exist_ok=True)
        kind = "stream" if stream else "nonstream"
        raw = RESULTS / f"profile-{t.name}-{kind}.txt"
        duration = max(3, self.args.duration // 2)
        # --gil: only samples of the thread holding the GIL (idle waits and helper threads blocked
        # in a queue are left out, so the shares are of the interpreter's busy time)
        spy = Proc("py-spy", [pyspy, "record", "-p", str(t.proc.pid), "-d", str(duration + 1), "-r", "250",
                              "--gil", "-f", "raw", "-o", str(raw)], self.load_core,
                   self.workdir / f"pyspy-{kind}.log")
        with running(spy):
            time.sleep(0.5)
            self.run_wrk(t.url + "/v1/chat/completions", t.key, 50, duration, stream)
            spy.wait(30)
        return {"file": str(raw.relative_to(ROOT)), **summarize_profile(raw.read_text())}


_LINE = re.compile(r":\d+\)$")


def summarize_profile(collapsed: str, top: int = 25) -> dict[str, Any]:
    """Inclusive share of samples per function, for the gateway's own code and for everything."""
    total, incl_proxy, self_all = 0, Counter[str](), Counter[str]()
    for line in collapsed.splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        total += n
        frames = [_LINE.sub(")", f) for f in stack.split(";")]  # per function, not per line
        self_all[frames[-1]] += n
        for f in set(frames):
            if "(proxy/" in f or "/proxy/" in f:
                incl_proxy[f] += n

    def pct(c: Counter[str]) -> list[tuple[str, float]]:
        return [(f, round(100 * n / max(1, total), 1)) for f, n in c.most_common(top)]

    return {"samples": total, "inclusive_proxy": pct(incl_proxy), "self": pct(self_all)}
