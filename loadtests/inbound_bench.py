"""End to end, same run: the gateway's CPU per request and per streamed chunk for chat completions vs the
inbound APIs (`/v1/responses`, `/v1/messages`) asking the same upstream for the same answer.

    .venv/bin/python loadtests/inbound_bench.py                     # ~2 minutes
    .venv/bin/python loadtests/inbound_bench.py --duration 4 --rounds 3 --apis chat,responses

One gateway (the benchmark's measured configuration: auth, metrics, a JSON log line per request, the SQLite
ledger, cache off) pinned to the first core; the mock upstream and wrk share the second. Every API is loaded in
turn within each round (interleaved), and each one's best round (lowest gateway CPU per request) is kept. CPU
is the gateway process's user + system time over the wrk run, divided by its completed requests (and, for
streams, by the chunks a stream has: the mock's role chunk, 18 tokens and the finish chunk). The Responses
body says `store: false` (storing is a database insert, measured as its own row `responses+store`).
Only 127.0.0.1 is contacted; the child processes are stopped when this script exits.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from loadtests.bench.configs import GATEWAY_KEY, MODEL, STREAM_MOCK, Variant
from loadtests.bench.load import parse_tagged_json
from loadtests.bench.procs import (
    Proc,
    configure_mock,
    exit_on_signals,
    pick_cores,
    raise_nofile,
    running,
    start_gateway,
    start_mock,
    stop_all,
)

HERE = Path(__file__).resolve().parent
CHUNKS = 20  # STREAM_MOCK: role chunk + 18 tokens + finish chunk
ASK = "Say something short."
BODIES: dict[str, tuple[str, dict[str, Any]]] = {
    "chat": ("/v1/chat/completions", {"model": MODEL, "messages": [{"role": "user", "content": ASK}]}),
    "responses": ("/v1/responses", {"model": MODEL, "input": ASK, "store": False}),
    "responses+store": ("/v1/responses", {"model": MODEL, "input": ASK}),
    "messages": ("/v1/messages", {"model": MODEL, "max_tokens": 256, "messages": [{"role": "user", "content": ASK}]}),
}


def wrk(url: str, body: dict[str, Any], conns: int, duration: int, core: int | None, log: Path) -> dict[str, Any]:
    env = {**os.environ, "GATEWAY_KEY": GATEWAY_KEY, "GATEWAY_BODY": json.dumps(body)}
    proc = Proc("wrk", ["wrk", "-t1", f"-c{conns}", f"-d{duration}s", "--latency", "--timeout", "10s", "-s",
                        str(HERE / "wrk" / "chat.lua"), url], core, log, env=env)
    with running(proc):
        if proc.wait(duration + 30) != 0:
            raise RuntimeError(f"wrk failed:\n{proc.tail()}")
    return parse_tagged_json(proc.output(), "WRK_JSON")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--apis", default="chat,responses,responses+store,messages")
    p.add_argument("--duration", type=int, default=5, help="seconds of load a run (default 5)")
    p.add_argument("--rounds", type=int, default=3, help="interleaved rounds, best kept (default 3)")
    p.add_argument("--connections", type=int, default=16)
    a = p.parse_args(argv)
    apis = [x.strip() for x in a.apis.split(",") if x.strip()]
    if unknown := set(apis) - set(BODIES):
        p.error(f"unknown api(s): {', '.join(sorted(unknown))}")
    exit_on_signals()
    raise_nofile()
    proxy_core, load_core = pick_cores()
    results: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory(prefix="inbound-bench-") as tmp:
        work = Path(tmp)
        try:
            _mock, mock_url = start_mock(work, load_core)
            configure_mock(mock_url, STREAM_MOCK)
            gw, url = start_gateway(work, mock_url, Variant("gateway"), proxy_core)
            runs = 0
            for _ in range(a.rounds):
                for stream in (False, True):
                    for api in apis:
                        path, body = BODIES[api]
                        runs += 1
                        before = gw.cpu_seconds()
                        w = wrk(url + path, {**body, "stream": stream}, a.connections, a.duration, load_core,
                                work / f"wrk-{runs}.log")
                        cpu = gw.cpu_seconds() - before
                        errors = w["status_errors"] + w["read_errors"] + w["timeouts"]
                        n = max(1, w["requests"])
                        row = {"requests": w["requests"], "errors": errors, "rps": n / (w["duration_us"] / 1e6),
                               "cpu_per_req_us": cpu / n * 1e6}
                        if stream:
                            row["cpu_per_chunk_us"] = row["cpu_per_req_us"] / CHUNKS
                        key = f"{api}/{'stream' if stream else 'json'}"
                        print(f"  {key:<24} {row['rps']:>8.0f} req/s {row['cpu_per_req_us']:>8.1f} us CPU/req "
                              f"errors {errors}", file=sys.stderr, flush=True)
                        if key not in results or row["cpu_per_req_us"] < results[key]["cpu_per_req_us"]:
                            results[key] = row
        finally:
            stop_all()
    for mode in ("json", "stream"):
        base = results.get(f"chat/{mode}")
        for api in apis:
            r = results[f"{api}/{mode}"]
            if base:
                r["ratio"] = r["cpu_per_req_us"] / base["cpu_per_req_us"]
    print(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
