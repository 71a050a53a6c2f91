"""Reports: markdown tables, the terminal summary, and the `##` sections of docs/benchmarks.md.

Every benchmark script owns one or more `##` sections of docs/benchmarks.md and rewrites only those
(write_sections); the others are kept as they are.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import math
import os
import platform
import subprocess
from importlib import metadata
from pathlib import Path
from typing import Any

from .configs import DOCS, ROOT, VARIANTS
from .cpu import NOISY
from .verdicts import TTFC_ADDED_MAX_MS

DOC_HEADING = "## Gateway core"


def num(v: float | None, fmt: str = ".1f") -> str:
    return "-" if v is None or (isinstance(v, float) and math.isnan(v)) else format(v, fmt)


def pct(v: float | None) -> str:
    return "-" if v is None else f"{v:.0%}"


def _noise(t: dict[str, Any]) -> str:
    if t.get("proxy_core_other") is None:
        return "-"
    return f"{pct(t['proxy_core_other'])} / {pct(t.get('proxy_core_other_max'))}"


def rows(r: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    out = []
    if "direct" in r:
        out.append(("direct to mock", r["direct"]))
    if "baseline" in r:
        out.append(("baseline pass-through", r["baseline"]))
    for name, g in r.get("gateways", {}).items():
        out.append((name, g))
    return out


def md_table(header: list[str], body: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in body]
    return "\n".join(lines)


def report_tables(r: dict[str, Any]) -> list[tuple[str, str]]:
    """(title, markdown table) pairs; printed to the terminal and written to docs/benchmarks.md."""
    tables = []
    base = r.get("baseline", {})
    body = []
    for name, t in rows(r):
        c = t.get("core")
        if t.get("error"):
            body.append([name, "error: " + t["error"].splitlines()[0][:80]] + [""] * 9)
            continue
        if not c:
            continue
        bc = base.get("core")
        rps_ratio = c["rps"] / bc["rps"] if bc and name != "direct to mock" else None
        cpu_ratio = (c["cpu_per_req_ms"] / bc["cpu_per_req_ms"]
                     if bc and c.get("cpu_per_req_ms") is not None else None)
        body.append([name, f"{c['rps']:.0f}", pct(rps_ratio), f"{c['p50_ms']:.2f}", f"{c['p99_ms']:.2f}",
                     num(None if c.get("cpu_per_req_ms") is None else c["cpu_per_req_ms"] * 1000, ".0f"),
                     num(cpu_ratio, ".2f"), num(c.get("rss_mib"), ".1f"), str(c["errors"]),
                     _noise(c), pct(c.get("load_core_busy"))])
    if body:
        tables.append(("Non-stream, 50 connections (wrk)", md_table(
            ["target", "req/s", "vs baseline", "p50 ms", "p99 ms", "CPU us/req", "CPU vs baseline", "RSS MiB",
             "errors", "other load on proxy core (min / max)", "load core busy"], body)))
    body = []
    d_p50 = r.get("direct", {}).get("latency", {}).get("p50_ms")
    for name, t in rows(r):
        lat = t.get("latency")
        if lat:
            added = None if d_p50 is None or name == "direct to mock" else lat["p50_ms"] - d_p50
            body.append([name, f"{lat['p50_ms']:.3f}", num(added, ".3f"), f"{lat['p99_ms']:.3f}",
                         f"{lat['rps']:.0f}", num(None if lat.get("cpu_per_req_ms") is None
                                                 else lat["cpu_per_req_ms"] * 1000, ".0f")])
    if body:
        tables.append(("Non-stream, 1 connection (wrk): added latency", md_table(
            ["target", "p50 ms", "added p50 ms", "p99 ms", "req/s", "CPU us/req"], body)))
    body = []
    for name, t in rows(r):
        s = t.get("streams")
        if s:
            body.append([name, f"{s['rps']:.0f}", f"{s['p50_ms']:.2f}", f"{s['p99_ms']:.2f}",
                         num(s.get("cpu_per_req_ms"), ".3f"), num(s.get("rss_mib"), ".1f"), str(s["errors"]),
                         _noise(s), pct(s.get("load_core_busy"))])
    if body:
        tables.append(("Streams, 20 chunks each, 50 connections (wrk)", md_table(
            ["target", "streams/s", "p50 ms (whole stream)", "p99 ms", "CPU ms/stream", "RSS MiB", "errors",
             "other load on proxy core (min / max)", "load core busy"], body)))
    for key in ("concurrent", "concurrent_light"):
        body = []
        d_ttfc = r.get("direct", {}).get(key, {}).get("measured", {}).get("ttfc_p99_ms")
        for name, t in rows(r):
            c = t.get(key)
            if c:
                m, cold = c["measured"], c["rounds"][0]
                added = (None if d_ttfc is None or m["ttfc_p99_ms"] is None or name == "direct to mock"
                         else m["ttfc_p99_ms"] - d_ttfc)
                body.append([name, str(c["errors"]), str(m["peak_concurrency"]), num(m["ttfc_p50_ms"], ".1f"),
                             num(m["ttfc_p99_ms"], ".1f"), num(added, ".1f"), num(cold["ttfc_p99_ms"], ".1f"),
                             num(m["total_p99_ms"], ".0f"), num(c.get("cpu_per_stream_ms"), ".2f"),
                             num(c.get("rss_mib"), ".1f"), num(c.get("hwm_mib"), ".1f"),
                             pct(c.get("proxy_core_busy")), pct(c.get("load_core_busy")),
                             str(c.get("listen_overflows", "-"))])
                client, n = c.get("client", "streamclient.py"), c["streams"]
        if body:
            tables.append((f"{n} concurrent streams, {r['args'].get('stream_tokens', 10)} tokens at "
                           f"10 tokens/s, started over {r['args']['ramp']:g} s ({client})",
                           md_table(["target", "errors", "peak open", "TTFC p50 ms", "TTFC p99 ms",
                                     "added TTFC p99 ms", "cold-round TTFC p99 ms", "stream p99 ms",
                                     "CPU ms/stream", "RSS MiB after", "peak RSS MiB", "proxy core busy",
                                     "load core busy", "listen overflows"], body)))
    checks = r.get("checks", [])
    if checks:
        tables.append(("Targets (ratios to the baseline measured in the same run)", md_table(
            ["target", "measured", "limit", "result"],
            [[c["what"], c["value"], c["limit"], c["verdict"]] for c in checks])))
    return tables


def machine_info() -> dict[str, Any]:
    model = "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break

    def version(pkg: str) -> str:
        try:
            return metadata.version(pkg)
        except metadata.PackageNotFoundError:
            return "-"

    commit = "-"
    with contextlib.suppress(Exception):
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True,
                                timeout=5).stdout.strip() or "-"
    return {"nproc": os.cpu_count(), "cpu_model": model, "kernel": platform.release(),
            "python": platform.python_version(), "aiohttp": version("aiohttp"), "uvloop": version("uvloop"),
            "commit": commit, "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")}


def render_markdown(r: dict[str, Any]) -> str:
    m, a = r["machine"], r["args"]
    lines = [
        DOC_HEADING, "",
        "_Written by `make bench` (`loadtests/benchmark.py`); rerun it to refresh this section._", "",
        f"Date: {m['date']} · machine: {m['nproc']} CPUs, {m['cpu_model']}, Linux {m['kernel']} · "
        f"Python {m['python']}, aiohttp {m['aiohttp']}, uvloop {m['uvloop']} · commit {m['commit']} · "
        f"mode: {'quick' if a['quick'] else 'full'}: per target {a['duration']}s at 50 connections, "
        f"{a['latency_duration']}s at 1 connection, {a['stream_duration']}s of streams, each cut into "
        f"{a['rounds']} interleaved rounds (baseline, gateway, variants, baseline, ...); each figure is "
        f"the best round (most req/s, least CPU per request, lowest latency), because other work on this "
        f"shared machine only ever makes a round worse; a proxy whose rounds were all noisy (more than "
        f"{NOISY:.0%} of its core used by other work) gets a few extra rounds, and a target compared on "
        f"noisy rounds only is marked [noisy]. The raw rounds are in loadtests/results/*.json.", "",
        "Setup: the proxies under test (the bare aiohttp pass-through `loadtests/baseline_passthrough.py` and "
        "each gateway configuration) are pinned to core 0 and take the load one at a time, round-robin; "
        "the mock upstream (`gateway mock-upstream`, 20-token lorem replies) and the load generator (wrk, "
        "or the compiled `loadtests/sseload.c` for the concurrent streams) share core 1. Each gateway "
        "starts on a ledger database that `gateway migrate` brought to the newest revision, as after a deploy. "
        "CPU is the proxy "
        "process's utime+stime from /proc divided by the requests served. The gateway runs with key auth, "
        "Prometheus metrics and one JSON log line per request (to a file), and with the response cache off "
        "(the default without a `cache:` section), unless the row says otherwise: only `cache-hit` turns the "
        "cache on. "
        "Targets are ratios to the baseline measured in the same run, because the machine is shared and "
        "absolute figures move from run to run; \"other load on proxy core\" is CPU used on core 0 by "
        "anything but the proxy (other people's tests, the kernel) and \"load core busy\" shows whether "
        "the mock + load generator core was saturated.", "",
    ]
    for title, table in report_tables(r):
        lines += [f"### {title}", "", table, ""]
    lines += concurrent_note(r)
    notes = []
    for v in VARIANTS:
        g = r.get("gateways", {}).get(v.name)
        if g is not None:
            seen = {k: val for k, val in (g.get("probe_headers") or {}).items() if "cache" in k.lower()}
            extra = f" (answer headers after the load: {seen})" if seen else ""
            notes.append(f"- `{v.name}`: {v.note or 'see VARIANTS'}{extra}")
    if notes:
        lines += ["Gateway variants:", "", *notes, ""]
    ok = [c["ok"] for c in r.get("checks", [])]
    lines.append(f"Overall: **{'PASS' if ok and all(x is not False for x in ok) else 'FAIL'}** "
                 f"({sum(x is True for x in ok)} pass, {sum(x is False for x in ok)} fail).")
    return "\n".join(lines) + "\n"


def concurrent_note(r: dict[str, Any]) -> list[str]:
    """Why the added TTFC at the issue's load says little when the baseline itself saturates there."""
    d = r.get("direct", {}).get("concurrent", {}).get("measured", {})
    b = r.get("baseline", {}).get("concurrent", {})
    if d.get("ttfc_p99_ms") is None or b.get("measured", {}).get("ttfc_p99_ms") is None:
        return []
    b_added = b["measured"]["ttfc_p99_ms"] - d["ttfc_p99_ms"]
    if b_added < TTFC_ADDED_MAX_MS or not b.get("cpu_per_stream_ms"):
        return []
    a = r["args"]
    events, window = a.get("stream_tokens", 10) + 2, a["ramp"] + a.get("stream_tokens", 10) / 10
    need = b["streams"] * b["cpu_per_stream_ms"] / 1000
    light = r.get("gateways", {}).get(VARIANTS[0].name, {}).get("concurrent_light")
    text = (f"Note on the concurrent streams: at this load the bare pass-through itself adds {b_added:.0f} ms "
            f"to the TTFC p99. It spends {b['cpu_per_stream_ms']:.2f} ms of CPU on a {events}-event stream, so "
            f"{b['streams']} streams started within {a['ramp']:g} s ask for {need:.1f} s of one core's time in "
            f"about {window:.1f} s: its core saturates ({pct(b.get('proxy_core_busy'))} busy over the whole "
            "run, ramp-down included) and new streams queue behind the ones already open. Whatever a gateway "
            "adds on top, the 50 ms target is out of reach for the ceiling itself on this machine, so the "
            "gateway's figure there measures queueing, not the gateway.")
    if light:
        text += (f" The {light['streams']}-stream table is the same test at a load the baseline carries: "
                 "there the added TTFC measures the gateway.")
    return [text, ""]


def replace_section(doc: str, heading: str, section: str) -> str:
    """Replace the `## heading` section (up to the next `## `) or append it; other sections are kept."""
    lines = doc.splitlines(keepends=True)
    start = next((i for i, line in enumerate(lines) if line.rstrip() == heading), None)
    if start is None:
        sep = "" if not doc or doc.endswith("\n\n") else ("\n" if doc.endswith("\n") else "\n\n")
        return doc + sep + section
    end = next((i for i in range(start + 1, len(lines)) if lines[i].startswith("## ")), len(lines))
    tail = "".join(lines[end:])
    return "".join(lines[:start]) + section + ("\n" + tail if tail else "")


def write_sections(sections: dict[str, str], path: Path = DOCS) -> None:
    """Replace (or append) each `## heading` section of `path`: {heading: section text}."""
    doc = path.read_text() if path.exists() else "# Benchmarks\n\n"
    for heading, section in sections.items():
        doc = replace_section(doc, heading, section)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(doc)


def write_docs(r: dict[str, Any], path: Path = DOCS) -> None:
    write_sections({DOC_HEADING: render_markdown(r)}, path)


def print_report(r: dict[str, Any]) -> None:
    m = r["machine"]
    print(f"\n{m['date']}  {m['nproc']} CPUs  {m['cpu_model']}  Python {m['python']}  aiohttp {m['aiohttp']}")
    for title, table in report_tables(r):
        print(f"\n{title}\n{table}")
    for kind, prof in (r.get("gateways", {}).get(VARIANTS[0].name, {}).get("profile") or {}).items():
        print(f"\nprofile ({kind}, {prof['samples']} samples, {prof['file']}): inclusive % in proxy/ code")
        for frame, share in prof["inclusive_proxy"][:20]:
            print(f"  {share:5.1f}%  {frame}")
        print(f"profile ({kind}): self % (leaf frames)")
        for frame, share in prof["self"][:15]:
            print(f"  {share:5.1f}%  {frame}")
    ok = [c["ok"] for c in r.get("checks", [])]
    print(f"\nOverall: {'PASS' if ok and all(x is not False for x in ok) else 'FAIL'}")
