"""The gateway core benchmark's targets (ratios to the baseline measured in the same run) and their checks."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .configs import VARIANTS
from .cpu import NOISY

RPS_MIN_RATIO = 0.60
CPU_MAX_RATIO = 1.7
ADDED_P50_MS, ADDED_P50_REF_MS = 0.5, 0.23  # gateway added p50 <= 0.5 ms * (baseline added / 0.23 ms)
STREAM_CPU_MS, STREAM_CPU_REF_MS = 2.0, 1.1  # gateway CPU/stream <= 2 ms * (baseline CPU/stream / 1.1 ms)
TTFC_ADDED_MAX_MS = 50.0
RSS_MAX_MIB = 100.0
MAX_ERROR_RATE = 0.001


def verdict(ok: bool | None, info: bool = False) -> str:
    """What a report prints for a check: None means it could not be evaluated; info is context, not a target."""
    if info:
        return "info"
    return "n/a" if ok is None else ("PASS" if ok else "FAIL")


@dataclass
class Check:
    what: str
    value: str
    limit: str
    ok: bool | None  # None: could not be evaluated
    info: bool = False  # context for the reader, not a target

    @property
    def verdict(self) -> str:
        return verdict(self.ok, self.info)


def _noisy(*loads: dict[str, Any]) -> str:
    """A warning when a compared figure only had noisy rounds (req/s suffers most; CPU/request less)."""
    worst = max((x.get("proxy_core_other") or 0.0 for x in loads), default=0.0)
    return f" [noisy: {worst:.0%} of the proxy core used by other work]" if worst > NOISY else ""


def evaluate(r: dict[str, Any]) -> list[Check]:
    checks: list[Check] = []
    base, direct = r.get("baseline", {}), r.get("direct", {})
    for v in VARIANTS:
        g = r.get("gateways", {}).get(v.name)
        if not g or not v.targets or "core" not in g or "core" not in base:
            continue
        gc, bc = g["core"], base["core"]
        ratio = gc["rps"] / bc["rps"]
        err_rate = gc["errors"] / max(1, gc["requests"])
        checks.append(Check(f"{v.name}: req/s at 50 conns vs baseline",
                            f"{gc['rps']:.0f} / {bc['rps']:.0f} = {ratio:.0%}"
                            + (f" ({gc['errors']} errors)" if gc["errors"] else "") + _noisy(gc, bc),
                            f">= {RPS_MIN_RATIO:.0%}", ratio >= RPS_MIN_RATIO and err_rate <= MAX_ERROR_RATE))
        cr = gc["cpu_per_req_ms"] / bc["cpu_per_req_ms"]
        checks.append(Check(f"{v.name}: CPU per request vs baseline",
                            f"{gc['cpu_per_req_ms'] * 1000:.0f} / {bc['cpu_per_req_ms'] * 1000:.0f} us = {cr:.2f}x"
                            + _noisy(gc, bc),
                            f"<= {CPU_MAX_RATIO:.1f}x", cr <= CPU_MAX_RATIO))
    g = r.get("gateways", {}).get(VARIANTS[0].name, {})
    if "latency" in g and "latency" in base and "latency" in direct:
        g_add = g["latency"]["p50_ms"] - direct["latency"]["p50_ms"]
        b_add = base["latency"]["p50_ms"] - direct["latency"]["p50_ms"]
        limit = ADDED_P50_MS * b_add / ADDED_P50_REF_MS
        checks.append(Check("added p50 at 1 connection (gateway - direct)",
                            f"{g_add:.3f} ms (baseline adds {b_add:.3f} ms)",
                            f"<= {limit:.3f} ms (0.5 ms x baseline/0.23 ms)", g_add <= limit if b_add > 0 else None))
    if "streams" in g and "streams" in base:
        gs, bs = g["streams"], base["streams"]
        limit = STREAM_CPU_MS * bs["cpu_per_req_ms"] / STREAM_CPU_REF_MS
        checks.append(Check("CPU per stream (20 chunks)",
                            f"{gs['cpu_per_req_ms']:.3f} ms (baseline {bs['cpu_per_req_ms']:.3f} ms)"
                            + (f" ({gs['errors']} errors)" if gs["errors"] else "") + _noisy(gs, bs),
                            f"<= {limit:.3f} ms (2 ms x baseline/1.1 ms)",
                            gs["cpu_per_req_ms"] <= limit and gs["errors"] / max(1, gs["requests"]) <= MAX_ERROR_RATE))
    for key in ("concurrent", "concurrent_light"):
        if key in g:
            checks += concurrent_checks(key, g[key], direct.get(key), base.get(key))
    return checks


def concurrent_checks(key: str, gc: dict[str, Any], dc: dict[str, Any] | None,
                      bc: dict[str, Any] | None) -> list[Check]:
    """The issue's targets at its load ("concurrent"); the same figures as context at the light load."""
    n, info = gc["streams"], key != "concurrent"
    label = f"{n} concurrent streams" + (" (lighter load, context)" if info else "")
    out = [Check(f"{label}: errors", str(gc["errors"]), "0", gc["errors"] == 0, info=info)]
    d99 = (dc or {}).get("measured", {}).get("ttfc_p99_ms")
    if d99 is not None and gc["measured"]["ttfc_p99_ms"] is not None:
        added = gc["measured"]["ttfc_p99_ms"] - d99
        b99 = (bc or {}).get("measured", {}).get("ttfc_p99_ms")
        b_added = None if b99 is None else b99 - d99
        ceiling = "" if b_added is None else f" (baseline adds {b_added:.1f} ms)"
        out.append(Check(f"{label}: added TTFC p99 vs direct", f"{added:.1f} ms{ceiling}",
                         f"< {TTFC_ADDED_MAX_MS:.0f} ms", added < TTFC_ADDED_MAX_MS, info=info))
    out.append(Check(f"{label}: gateway RSS after the run", f"{gc['rss_mib']:.1f} MiB (peak {gc['hwm_mib']:.1f})"
                     + (f", baseline {bc['rss_mib']:.1f} MiB" if bc and bc.get("rss_mib") else ""),
                     f"< {RSS_MAX_MIB:.0f} MiB", gc["rss_mib"] < RSS_MAX_MIB, info=info))
    return out
