"""Feature benchmarks: what quotas, the response cache, metrics, provider translation and webhooks cost.

    .venv/bin/python loadtests/feature_bench.py            # full run (~5 minutes), updates docs/benchmarks.md
    .venv/bin/python loadtests/feature_bench.py --quick    # ~2-3 minutes
    .venv/bin/python loadtests/feature_bench.py --only cache,metrics --no-docs

Same layout as loadtests/benchmark.py: the gateways under test are pinned to core 0 and take the load one
at a time in interleaved rounds (best round kept); the mock upstream and wrk share core 1. The sections
are loadtests/bench/features.py, their targets and report loadtests/bench/feature_report.py. Each section
is written as its own `##` section of docs/benchmarks.md; every other section there (`## Gateway core`,
`## Resilience`, ...) is left as it is.

  quotas       non-stream req/s + CPU/request: quotas off vs a key with rpm+tpm+rpd limits and a budget,
               in-process and on Redis (a random DB 1..15, flushed afterwards); then the usage ledger at
               peak rate on SQLite and PostgreSQL (a fresh schema, dropped afterwards), sampling
               gateway_ledger_queue_depth every second.
  cache        p50 of a hit vs a miss (upstream latency 0.2 s); hit req/s vs cache off (zero-delay
               upstream); 100 identical concurrent requests against a 0.5 s upstream -> upstream calls.
  metrics      req/s + CPU/request with metrics on vs off; /metrics render time with 50 aliases x 200 keys.
  translation  CPU per streamed chunk: OpenAI pass-through vs Anthropic vs Gemini aliases (50 lorem
               tokens per stream); time to first chunk through each.
  webhooks     req/s + p50 with a subscription to invocation.completed (sample rate 1.0, a local receiver)
               vs none, rounds alternating and each webhooks round's backlog delivered before the next;
               CPU per request including its delivery; every event delivered once.

Only 127.0.0.1 is ever contacted; every child process is stopped when this script exits.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from loadtests.bench.configs import CORE_MOCK, DOCS, RESULTS, ROOT
from loadtests.bench.feature_report import HEADINGS, render_section, write_docs
from loadtests.bench.features import RUNNERS
from loadtests.bench.load import Bench
from loadtests.bench.procs import configure_mock, exit_on_signals, raise_nofile, running, start_mock, stop_all
from loadtests.bench.report import machine_info

SECTIONS = tuple(RUNNERS)


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
    exit_on_signals()
    raise_nofile()
    m = machine_info()
    done: dict[str, dict[str, Any]] = {}
    try:
        with tempfile.TemporaryDirectory(prefix="gw-feature-") as tmp:
            b = Bench(a, Path(tmp))
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
