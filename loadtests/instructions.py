"""Instructions per request under callgrind: the gateway vs the bare pass-through, a ratio that does not drift.

Wall-clock CPU on a shared VM moves by up to 1.5x between rounds of one run, so hot-path changes are
A/B-tested by instruction count: the proxy runs under `valgrind --tool=callgrind` (pinned to core 0, the mock
upstream on core 1); after the warm-up its counters are zeroed, the measured requests are sent (a few at a
time, from an aiohttp client), and the counters dumped. Instructions count the proxy's own work, threads
included (the SQLite ledger writer), not the kernel's.

    python loadtests/instructions.py                 # non-stream, gateway and baseline
    python loadtests/instructions.py --stream        # 20-chunk streams
    python loadtests/instructions.py --target gateway --requests 2000
    python loadtests/instructions.py --target gateway --apis chat,responses,messages   # inbound APIs, same process
    python loadtests/instructions.py --native --apis chat,responses,chat@anthropic,messages@anthropic --stream
        # the same, with `responses: native` on the OpenAI provider and an Anthropic alias (/v1/messages forwarded)

Needs valgrind (Debian's `valgrind`; `scripts/install-system-deps.sh bench` installs it). Prints a JSON
line per target and the ratio; run it alone on the machine, as each target takes a few minutes.
"""

from __future__ import annotations

import argparse
import asyncio
import copy
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from loadtests.bench.configs import GATEWAY_KEY, UPSTREAM_KEY, VARIANTS, Variant
from loadtests.bench.net import chat_body
from loadtests.bench.procs import Proc, configure_mock, running, start_baseline, start_gateway, start_mock


def callgrind_argv(out: Path) -> list[str]:
    return ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", "--compress-strings=no"]


ANTHROPIC_ALIAS = "bench-claude"
# --native: the OpenAI provider speaks the Responses API itself; an alias on the mock's Anthropic format
NATIVE = Variant("native", {"providers": {"up": {"responses": "native"},
                                          "anth": {"type": "anthropic", "base_url": "{upstream}/anthropic",
                                                   "api_key": UPSTREAM_KEY}},
                            "models": {ANTHROPIC_ALIAS: {
                                "route": [{"provider": "anth", "model": "claude-sonnet-4-5"}]}}},
                 "native forwarding of /v1/responses and /v1/messages")


def start_proxy(target: str, workdir: Path, upstream: str, out: Path, native: bool = False) -> tuple[Proc, str]:
    """loadtests/benchmark.py's gateway (its `gateway` variant, or NATIVE) or baseline, under callgrind on core 0."""
    wrap, slow_start = callgrind_argv(out), 120.0  # importing under valgrind takes tens of seconds
    if target == "gateway":
        variant = VARIANTS[0]
        if native:
            cfg = copy.deepcopy(NATIVE.config)
            cfg["providers"]["anth"]["base_url"] = upstream + "/anthropic"
            variant = Variant(NATIVE.name, cfg, NATIVE.note)
        return start_gateway(workdir, upstream, variant, 0, wrap, slow_start)
    return start_baseline(workdir, upstream, 0, wrap=wrap, ready_timeout=slow_start)


# --apis: the same question through each inbound API (path, body, the bytes a complete stream ends with);
# `<api>@anthropic` asks the Anthropic alias (with --native)
APIS: dict[str, tuple[str, dict[str, Any], bytes]] = {
    "chat": ("/v1/chat/completions", {}, b"[DONE]"),
    "responses": ("/v1/responses", {"input": "Say something short.", "store": False}, b"response.completed"),
    "messages": ("/v1/messages", {"max_tokens": 256, "messages": [{"role": "user", "content": "Say something short."}]},
                 b"message_stop"),
}
APIS.update({f"{name}@anthropic": spec for name, spec in APIS.items()})


async def send(url: str, n: int, concurrency: int, stream: bool, api: str = "chat") -> None:
    path, extra, end = APIS[api]
    body, headers = chat_body(stream), {"Authorization": f"Bearer {GATEWAY_KEY}"}
    if api.endswith("@anthropic"):
        body["model"] = ANTHROPIC_ALIAS
    if extra:
        body = {"model": body["model"], **extra, **({"stream": True} if stream else {})}
    left = n

    async def worker(session: aiohttp.ClientSession) -> None:
        nonlocal left
        while left > 0:
            left -= 1
            async with session.post(url + path, json=body, headers=headers) as r:
                data = await r.read()
                if r.status != 200 or (stream and end not in data):
                    raise RuntimeError(f"{url} answered {r.status}: {data[:200]!r}")

    async with aiohttp.ClientSession() as session:
        await asyncio.gather(*(worker(session) for _ in range(concurrency)))


def total_instructions(out: Path) -> int:
    """The `summary:` of the dump `callgrind_control -d` wrote (out.1, out.2...: the newest)."""
    dumps = sorted(out.parent.glob(out.name + ".*"), key=lambda p: p.stat().st_mtime)
    if not dumps:
        raise RuntimeError(f"callgrind wrote no dump next to {out}")
    for line in dumps[-1].read_text(errors="replace").splitlines():
        if line.startswith(("summary:", "totals:")):
            return int(line.split()[1])
    raise RuntimeError(f"no instruction total in {dumps[-1]}")


def measure(target: str, args: argparse.Namespace, workdir: Path, upstream: str) -> dict[str, Any]:
    out = workdir / f"callgrind.{target}"
    proc, url = start_proxy(target, workdir, upstream, out)
    with running(proc):
        asyncio.run(send(url, args.warmup, args.concurrency, args.stream))
        subprocess.run(["callgrind_control", "-z", str(proc.pid)], check=True, capture_output=True)
        asyncio.run(send(url, args.requests, args.concurrency, args.stream))
        subprocess.run(["callgrind_control", "-d", str(proc.pid)], check=True, capture_output=True)
    total = total_instructions(out)
    return {"target": target, "stream": args.stream, "requests": args.requests,
            "instructions": total, "per_request": round(total / args.requests)}


def measure_apis(args: argparse.Namespace, workdir: Path, upstream: str) -> list[dict[str, Any]]:
    """One gateway process, each API's requests counted apart (zeroed before, dumped after): same-run figures."""
    out = workdir / "callgrind.apis"
    proc, url = start_proxy("gateway", workdir, upstream, out, args.native)
    results = []
    with running(proc):
        for api in args.apis:
            asyncio.run(send(url, args.warmup, args.concurrency, args.stream, api))
        for api in args.apis:
            subprocess.run(["callgrind_control", "-z", str(proc.pid)], check=True, capture_output=True)
            asyncio.run(send(url, args.requests, args.concurrency, args.stream, api))
            subprocess.run(["callgrind_control", "-d", str(proc.pid)], check=True, capture_output=True)
            total = total_instructions(out)
            results.append({"target": "gateway", "api": api, "stream": args.stream, "requests": args.requests,
                            "instructions": total, "per_request": round(total / args.requests)})
            print(json.dumps(results[-1]), flush=True)
    return results


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--target", choices=("both", "gateway", "baseline"), default="both")
    p.add_argument("--stream", action="store_true", help="20-chunk streams instead of non-stream requests")
    p.add_argument("--requests", type=int, default=1000)
    p.add_argument("--warmup", type=int, default=300)
    p.add_argument("--concurrency", type=int, default=10)
    p.add_argument("--tokens", type=int, default=0,
                   help="the mock's reply tokens (default: its own, 18 + role and finish chunks = 20 chunks)")
    p.add_argument("--apis", default="", help="chat,responses,messages: each API through one gateway process")
    p.add_argument("--native", action="store_true",
                   help="with --apis: `responses: native` on the OpenAI provider, an Anthropic alias (<api>@anthropic)")
    args = p.parse_args(argv)
    args.apis = [a.strip() for a in args.apis.split(",") if a.strip()]
    if set(args.apis) - set(APIS):
        p.error(f"--apis takes {', '.join(APIS)}")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    for tool in ("valgrind", "callgrind_control"):
        if shutil.which(tool) is None:
            print(f"{tool} not found: install valgrind (scripts/install-system-deps.sh bench)", file=sys.stderr)
            return 2
    targets = ["gateway", "baseline"] if args.target == "both" else [args.target]
    results: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory(prefix="instructions-") as tmp:
        workdir = Path(tmp)
        mock, upstream = start_mock(workdir, 1)
        if args.tokens:
            configure_mock(upstream, {"reply": "lorem", "reply_tokens": args.tokens, "tokens_per_s": 0.0})
        if args.apis:
            with running(mock):
                per_api = measure_apis(args, workdir, upstream)
            for r in per_api:  # each API against chat completions to the same upstream
                chat = "chat@anthropic" if r["api"].endswith("@anthropic") else "chat"
                base = next((b for b in per_api if b["api"] == chat), None)
                if base is not None and r is not base:
                    print(f"{r['api']} / {chat}: {r['per_request'] / base['per_request']:.3f}x instructions per "
                          f"{'stream' if args.stream else 'request'}")
            return 0
        with running(mock):
            for target in targets:
                results[target] = measure(target, args, workdir, upstream)
                print(json.dumps(results[target]), flush=True)
    if len(results) == 2:
        ratio = results["gateway"]["per_request"] / results["baseline"]["per_request"]
        print(f"gateway / baseline: {ratio:.2f}x instructions per {'stream' if args.stream else 'request'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
