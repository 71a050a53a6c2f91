"""Throughput cost of quotas + budgets: one gateway, two keys, alternating wrk runs (not a pytest test).

    python tests/quotas/bench_overhead.py                 # in-process counters
    python tests/quotas/bench_overhead.py --redis redis://127.0.0.1:6379/15
    python tests/quotas/bench_overhead.py --key typ --rounds 10

Key `off` has no limits; `rpm` one window; `typ` rpm + tpm + a budget; `heavy` adds rpd and a per-provider
window. Runs alternate (A B, B A, ...) against the same process so drift and neighbours hit both alike;
the report is the mean of the per-round ratios. Needs `wrk`; pins the gateway and wrk to different CPUs
when `taskset` exists. The gateway's non-stream path is served by the in-process mock provider.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
LIMITS = {
    "off": "",
    "rpm": ", limits: {rpm: 100000000}",
    "typ": ", limits: {rpm: 100000000, tpm: 10000000000}, budget: {usd: 1000000, period: daily}",
    "heavy": (", limits: {rpm: 100000000, tpm: 10000000000, rpd: 1000000000, per_provider: {mock: "
              "{rpm: 100000000}}}, budget: {usd: 1000000, period: daily}"),
}


def config(port: int, db: str, redis: str | None) -> str:
    keys = "\n".join(f'  - {{name: "{k}", key: sk-{k}{v}}}' for k, v in LIMITS.items())
    return (f"listen: {{host: 127.0.0.1, port: {port}}}\nproviders: {{mock: {{type: mock}}}}\n"
            f"models: {{bench: {{route: [{{provider: mock, model: mock-1}}]}}}}\nkeys:\n{keys}\n"
            f"logging: {{requests: false}}\ncache: {{enabled: false}}\ndatabase: {{url: \"sqlite:///{db}\"}}\n"
            "pricing: {mock-1: {input: 0.001, output: 0.001}}\n"
            + (f'redis: {{url: "{redis}"}}\n' if redis else ""))


def wrk(port: int, key: str, seconds: int, pin: list[str]) -> float:
    env = dict(os.environ, GATEWAY_KEY=f"sk-{key}", GATEWAY_MODEL="bench")
    out = subprocess.run([*pin, "wrk", "-t1", "-c50", f"-d{seconds}s", "-s", str(ROOT / "loadtests/wrk/chat.lua"),
                          f"http://127.0.0.1:{port}/v1/chat/completions"], env=env, capture_output=True,
                         text=True, check=True).stdout
    if "Non-2xx" in out:
        raise SystemExit(f"errors during the run:\n{out}")
    return float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--redis", default=None, help="redis URL (a database you can flush); default in-process")
    p.add_argument("--key", default="typ", choices=[k for k in LIMITS if k != "off"])
    p.add_argument("--rounds", type=int, default=8)
    p.add_argument("--seconds", type=int, default=3)
    p.add_argument("--port", type=int, default=8799)
    args = p.parse_args()
    if not shutil.which("wrk"):
        raise SystemExit("wrk not found (apt-get install wrk)")
    pin_gw, pin_wrk = (["taskset", "-c", "1"], ["taskset", "-c", "0"]) if shutil.which("taskset") else ([], [])
    with tempfile.TemporaryDirectory() as tmp:
        cfg = Path(tmp) / "gateway.yaml"
        cfg.write_text(config(args.port, f"{tmp}/ledger.db", args.redis))
        gw = subprocess.Popen([*pin_gw, sys.executable, "-m", "proxy", "serve", "--config", str(cfg)], cwd=ROOT,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            for _ in range(100):
                try:
                    urllib.request.urlopen(f"http://127.0.0.1:{args.port}/healthz", timeout=1)
                    break
                except OSError:
                    time.sleep(0.1)
            for k in ("off", args.key):  # warm up both paths
                wrk(args.port, k, 2, pin_wrk)
            ratios = []
            for r in range(args.rounds):
                order = ("off", args.key) if r % 2 == 0 else (args.key, "off")
                rps = {k: wrk(args.port, k, args.seconds, pin_wrk) for k in order}
                ratios.append(rps[args.key] / rps["off"])
                print(f"round {r + 1}: off {rps['off']:.0f} req/s, {args.key} {rps[args.key]:.0f} req/s "
                      f"({(ratios[-1] - 1) * 100:+.1f}%)")
            print(f"mean throughput change with {args.key!r} ({'redis' if args.redis else 'in-process'}): "
                  f"{(sum(ratios) / len(ratios) - 1) * 100:+.1f}%")
        finally:
            gw.terminate()
            gw.wait(10)


if __name__ == "__main__":
    main()
