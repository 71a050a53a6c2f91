"""How fast the console's first page is usable; prints the figures for docs/benchmarks.md's `## Console`.

    .venv/bin/python loadtests/console_bench.py [--runs 15] [--calls 2000]

Starts `gateway serve` (mock provider, SQLite ledger seeded with `--calls` calls over 7 days through the API)
and drives Debian's Chromium (Playwright, `executable_path`) from a fresh browser context per run, so nothing
is cached: the time from navigation start to (a) the sign-in form ready (its "Sign in" button enabled) and
(b) for a signed-in admin, the Overview with its totals, four charts and provider health rendered. The figure
is `performance.now()` in the page at that moment. Only 127.0.0.1 is contacted.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aiohttp
import yaml

ADMIN = "sk-bench-admin"
KEY = "sk-bench-dev"
# Injected before the page's own scripts (an init script, not eval: the console's CSP forbids eval): the first
# moment each condition holds is recorded by a MutationObserver, so polling adds nothing to the figure.
OBSERVE = """
window.__ready = {};
const checks = {
  signin: () => document.querySelector('form button[type=submit]') !== null,
  overview: () => document.querySelectorAll('main figure').length === 4 &&
    [...document.querySelectorAll('main table caption')].some(c => c.textContent.startsWith('Provider')),
};
new MutationObserver(() => {
  for (const [k, f] of Object.entries(checks)) if (!(k in window.__ready) && f()) window.__ready[k] = performance.now();
}).observe(document, {childList: true, subtree: true, characterData: true});
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def seed(url: str, calls: int) -> None:
    body = {"model": "demo", "messages": [{"role": "user", "content": "hello"}]}
    async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {KEY}"}) as s:
        sem = asyncio.Semaphore(16)

        async def one(i: int) -> None:
            async with sem, s.post(url + "/v1/chat/completions", json={**body, "seed": i}) as r:
                await r.read()

        await asyncio.gather(*(one(i) for i in range(calls)))


async def measure(url: str, runs: int) -> dict[str, list[float]]:
    from playwright.async_api import async_playwright

    out: dict[str, list[float]] = {"sign-in form": [], "admin overview (signed in)": []}
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=shutil.which("chromium") or "/usr/bin/chromium")
        for _ in range(runs):
            ctx = await browser.new_context()
            await ctx.add_init_script(OBSERVE)
            page = await ctx.new_page()
            await page.goto(url + "/ui/")
            await page.get_by_role("button", name="Sign in").wait_for()
            out["sign-in form"].append(await page.evaluate("window.__ready.signin"))
            await page.get_by_label("API key").fill(ADMIN)
            await page.get_by_role("button", name="Sign in").click()
            await page.get_by_role("button", name="Sign out").wait_for()
            page2 = await ctx.new_page()  # a fresh page, signed in by its cookie: the first page an admin sees
            await page2.goto(url + "/ui/#/overview")
            await page2.get_by_role("table", name="Provider health and circuit breakers").wait_for(timeout=20_000)
            await page2.locator("main figure").nth(3).wait_for()
            out["admin overview (signed in)"].append(await page2.evaluate("window.__ready.overview"))
            await ctx.close()
        await browser.close()
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=15)
    ap.add_argument("--calls", type=int, default=2000)
    args = ap.parse_args()
    port = free_port()
    with tempfile.TemporaryDirectory() as tmp:
        cfg = {"listen": {"host": "127.0.0.1", "port": port},
               "providers": {"mock": {"type": "mock"}},
               "models": {"demo": {"route": [{"provider": "mock", "model": "mock-1"}]}},
               "keys": [{"name": "dev", "key": KEY, "models": ["*"]}], "admin": {"key": ADMIN},
               "database": {"url": f"sqlite:///{tmp}/ledger.db"}, "logging": {"requests": False}}
        path = Path(tmp) / "gateway.yaml"
        path.write_text(yaml.safe_dump(cfg))
        exe = Path(sys.executable).with_name("gateway")
        proc = subprocess.Popen([str(exe), "serve", "--config", str(path)], stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL, env={**os.environ})
        url = f"http://127.0.0.1:{port}"
        try:
            for _ in range(100):
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=0.1).close()
                    break
                except OSError:
                    time.sleep(0.1)
            asyncio.run(seed(url, args.calls))
            results = asyncio.run(measure(url, args.runs))
        finally:
            proc.terminate()
            proc.wait(10)
    load = os.getloadavg()[0]
    print(f"{args.runs} runs, fresh browser context each, {args.calls} calls in the ledger; "
          f"load average during the run {load:.1f} on {os.cpu_count()} CPUs")
    print("| page | median | p90 | max |")
    print("|---|---|---|---|")
    for name, values in results.items():
        values.sort()
        p90 = values[min(len(values) - 1, int(len(values) * 0.9))]
        print(f"| {name} | {statistics.median(values):.0f} ms | {p90:.0f} ms | {values[-1]:.0f} ms |")


if __name__ == "__main__":
    main()
