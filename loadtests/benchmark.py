"""Gateway core benchmark: the gateway measured against a bare aiohttp pass-through, in one run.

    .venv/bin/python loadtests/benchmark.py            # full run (~3-4 minutes), updates docs/benchmarks.md
    .venv/bin/python loadtests/benchmark.py --quick    # ~1 minute
    .venv/bin/python loadtests/benchmark.py --only core,latency --variants gateway,metrics-off

Layout on a 2-core machine: the proxies under test (the baseline pass-through and each gateway
variant) are pinned to core 0 and take the load one at a time; the mock upstream and the load
generators (wrk, loadtests/sseload.c) share core 1. Every target is a ratio to the baseline measured in
the same run, so a noisy machine moves both sides. Sections:

  core        wrk, 50 connections, non-stream: req/s, p50/p99, CPU seconds per request, RSS
  latency     wrk, 1 connection: added p50 latency versus going straight to the mock
  streams     wrk, 50 connections, SSE with 20 chunks per stream: CPU per stream
  concurrent  2,000 concurrent streams (10 tokens at 10 tokens/s): errors, added TTFC p99, RSS; the same
              at 500 streams (--light-streams), a load the baseline itself carries on this machine

Each section runs in interleaved rounds (baseline, gateway, variants, baseline, ...) and reports the
best round of each target: other work on a shared machine only ever makes a round worse.

Gateway variants are `Variant(name, gateway.yaml overrides)` in VARIANTS (loadtests/bench/configs.py);
add yours there. The first one ("gateway") runs every section, the others run `core` only.

Only 127.0.0.1 is ever contacted. Every child process is killed when this script exits, however it
exits (they also get SIGKILL from the kernel if this process dies: PR_SET_PDEATHSIG). The machinery is the
package loadtests/bench/; this script runs the sections and writes the report.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from loadtests.bench.configs import (
    CONCURRENT_MOCK,
    CORE_MOCK,
    DOCS,
    GATEWAY_KEY,
    RESULTS,
    ROOT,
    STREAM_MOCK,
    UPSTREAM_KEY,
    VARIANTS,
)
from loadtests.bench.load import Bench, Target
from loadtests.bench.net import probe
from loadtests.bench.procs import (
    exit_on_signals,
    raise_nofile,
    running,
    start_baseline,
    start_gateway,
    start_mock,
    stop_all,
)
from loadtests.bench.report import DOC_HEADING, machine_info, print_report, write_docs
from loadtests.bench.verdicts import evaluate

SECTIONS = ("core", "latency", "streams", "concurrent")


def run(args: argparse.Namespace) -> dict[str, Any]:
    sections = set(args.only)
    variants = [v for v in VARIANTS if args.variants is None or v.name in args.variants]
    r: dict[str, Any] = {"machine": machine_info(), "args": vars(args) | {"only": sorted(sections)},
                         "gateways": {}}
    with tempfile.TemporaryDirectory(prefix="gw-bench-") as tmp, contextlib.ExitStack() as stack:
        workdir = Path(tmp)
        bench = Bench(args, workdir)
        if bench.proxy_core is None:
            bench.log("warning: fewer than 2 CPUs available; nothing is pinned and figures mean little")
        bench.mock, bench.mock_url = start_mock(workdir, bench.load_core)
        stack.enter_context(running(bench.mock))
        direct = Target("direct to mock", bench.mock_url, UPSTREAM_KEY, None)
        # every proxy is started up front, each pinned to the proxy core; only one is under load at a time
        proxies: list[Target] = []
        try:
            proc, url = start_baseline(workdir, bench.mock_url, bench.proxy_core)
            stack.enter_context(running(proc))
            baseline = Target("baseline pass-through", url, GATEWAY_KEY, proc)
        except RuntimeError as err:
            baseline = Target("baseline pass-through", "", GATEWAY_KEY, None, results={"error": str(err)})
        proxies.append(baseline)
        gateways: list[Target] = []
        for v in variants:
            try:
                proc, url = start_gateway(workdir, bench.mock_url, v, bench.proxy_core)
                stack.enter_context(running(proc))
                gateways.append(Target(v.name, url, GATEWAY_KEY, proc, v))
            except RuntimeError as err:
                bench.log(f"gateway {v.name} did not start: {err}")
                gateways.append(Target(v.name, "", GATEWAY_KEY, None, v, {"error": str(err)}))
        proxies += gateways
        main_gw = gateways[:1]
        everyone = [direct, *proxies]
        if sections & {"core", "latency"}:
            bench.configure_mock(CORE_MOCK)
            bench.log("non-stream: probe + warm-up")
            ready = bench.prepare(everyone, stream=False)
            if "core" in sections:
                bench.rounds("core", ready, 50, args.duration)
            if "latency" in sections:
                bench.rounds("latency", [t for t in ready if t in (direct, baseline, *main_gw)], 1,
                             args.latency_duration)
            for t in ready:  # what a warmed-up proxy answers (e.g. cache headers)
                with contextlib.suppress(RuntimeError, OSError):
                    t.results["probe_headers"] = {k: v for k, v in probe(t.url + "/v1/chat/completions",
                                                                         t.key).items() if k.lower().startswith("x-")}
        if "streams" in sections:
            bench.configure_mock(STREAM_MOCK)
            bench.log("streams: probe + warm-up")
            ready = bench.prepare([direct, baseline, *main_gw], stream=True)
            bench.rounds("streams", ready, 50, args.stream_duration, stream=True)
        if "concurrent" in sections:
            bench.configure_mock({**CONCURRENT_MOCK, "reply_tokens": args.stream_tokens})
            # the lighter load first: its RSS figure is then its own, not the heavier run's peak
            for key, streams in (("concurrent_light", args.light_streams), ("concurrent", args.streams)):
                for t in (direct, baseline, *main_gw) if streams else ():
                    if not t.results.get("error"):
                        try:
                            t.results[key] = bench.concurrent_streams(t, streams)
                        except RuntimeError as err:
                            t.results["error"] = f"{key}: {err}"
        if args.profile and main_gw and main_gw[0].proc and not main_gw[0].results.get("error"):
            bench.log("profiling the gateway with py-spy (extra runs, not measured)")
            main_gw[0].results["profile"] = {"nonstream": bench.profile(main_gw[0], stream=False),
                                             "stream": bench.profile(main_gw[0], stream=True)}
        r["direct"], r["baseline"] = direct.results, baseline.results
        r["gateways"] = {g.name: g.results for g in gateways}
    r["checks"] = [c.__dict__ | {"verdict": c.verdict} for c in evaluate(r)]
    return r



def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="short runs (~1 minute in all)")
    p.add_argument("--only", default=",".join(SECTIONS), help=f"sections, comma-separated: {','.join(SECTIONS)}")
    p.add_argument("--variants", default=None,
                   help="gateway variants, comma-separated (default all): " + ",".join(v.name for v in VARIANTS))
    p.add_argument("--duration", type=int, default=None,
                   help="seconds of 50-connection load per target, split over the rounds (default 12; quick 2)")
    p.add_argument("--rounds", type=int, default=None,
                   help="interleaved rounds per section; each figure is the best round (default 6; quick 2)")
    p.add_argument("--streams", type=int, default=2000, help="concurrent streams in the `concurrent` section")
    p.add_argument("--light-streams", type=int, default=500,
                   help="the same again with this many streams, a load the baseline carries (0: skip)")
    p.add_argument("--ramp", type=float, default=1.0, help="seconds over which those streams start")
    p.add_argument("--stream-tokens", type=int, default=10,
                   help="tokens per stream in the `concurrent` section (at 10 a second)")
    p.add_argument("--profile", action="store_true",
                   help="also profile the gateway with py-spy (extra unmeasured runs; loadtests/results/)")
    p.add_argument("--no-docs", action="store_true", help=f"do not update {DOCS.relative_to(ROOT)}")
    p.add_argument("--check", action="store_true", help="exit 1 when a target fails")
    args = p.parse_args(argv)
    args.only = [s.strip() for s in args.only.split(",") if s.strip()]
    if unknown := set(args.only) - set(SECTIONS):
        p.error(f"unknown sections: {', '.join(sorted(unknown))}")
    if args.variants is not None:
        args.variants = [s.strip() for s in args.variants.split(",") if s.strip()]
        if unknown := set(args.variants) - {v.name for v in VARIANTS}:
            p.error(f"unknown variants: {', '.join(sorted(unknown))}")
    args.duration = args.duration or (2 if args.quick else 12)
    # 6 short rounds, not 3 long ones: this VM's speed swings by up to 1.5x over seconds (rounds of one
    # target in one run measured 500-741 us a request), and the best round needs a calm stretch to land in
    args.rounds = args.rounds or (2 if args.quick else 6)
    args.latency_duration = 2 if args.quick else 6
    args.stream_duration = 2 if args.quick else 9
    args.warmup = 1 if args.quick else 2
    args.retry_budget = 8 if args.quick else 30
    return args



def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    exit_on_signals()
    raise_nofile()
    t0 = time.monotonic()
    try:
        r = run(args)
    except KeyboardInterrupt:
        print("interrupted; child processes stopped", file=sys.stderr)
        return 130
    finally:
        stop_all()
    r["wall_s"] = round(time.monotonic() - t0, 1)
    print_report(r)
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / f"benchmark-{dt.datetime.now():%Y%m%d-%H%M%S}.json"
    out.write_text(json.dumps(r, indent=1, default=str))
    print(f"raw results: {out.relative_to(ROOT)}  ({r['wall_s']}s)")
    full = set(args.only) == set(SECTIONS) and args.variants is None
    if not args.no_docs and full:
        write_docs(r)
        print(f"updated {DOCS.relative_to(ROOT)} section {DOC_HEADING!r}")
    elif not args.no_docs:
        print(f"{DOCS.relative_to(ROOT)} not updated (only a subset ran)")
    failed = any(c["ok"] is False for c in r["checks"])
    return 1 if failed and args.check else 0


if __name__ == "__main__":
    sys.exit(main())
