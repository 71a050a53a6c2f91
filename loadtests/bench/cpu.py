"""CPU and memory accounting from /proc: a process's CPU seconds and RSS, per-core busy time, listen drops."""

from __future__ import annotations

import contextlib
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .procs import Proc

CLK_TCK = os.sysconf("SC_CLK_TCK")
NOISY = 0.15  # a round is noisy when something else used more than 15% of the proxy's core meanwhile


def cpu_seconds(pid: int) -> float:
    """utime + stime from /proc/<pid>/stat."""
    text = Path(f"/proc/{pid}/stat").read_text()
    fields = text[text.rindex(")") + 2:].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def memory_mib(pid: int) -> tuple[float, float]:
    """(VmRSS, VmHWM) in MiB from /proc/<pid>/status."""
    values = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(("VmRSS:", "VmHWM:")):
            values[line.split(":")[0]] = int(line.split()[1]) / 1024
    return values.get("VmRSS", 0.0), values.get("VmHWM", 0.0)


def core_ticks() -> dict[str, tuple[int, int]]:
    """Per-core (busy, total) ticks from /proc/stat."""
    out = {}
    for line in Path("/proc/stat").read_text().splitlines():
        if re.match(r"cpu\d+ ", line):
            name, *vals = line.split()
            v = [int(x) for x in vals[:8]]
            idle = v[3] + v[4]
            out[name] = (sum(v) - idle, sum(v))
    return out


@dataclass
class Snapshot:
    t: float
    proxy_cpu: float
    mock_cpu: float
    cores: dict[str, tuple[int, int]]

    @classmethod
    def take(cls, proxy: Proc | None, mock: Proc) -> Snapshot:
        return cls(time.monotonic(), proxy.cpu_seconds() if proxy else 0.0, mock.cpu_seconds(), core_ticks())


def usage_between(a: Snapshot, b: Snapshot, proxy_core: int | None, load_core: int | None) -> dict[str, Any]:
    def busy(core: int | None) -> float | None:
        if core is None or f"cpu{core}" not in a.cores:
            return None
        (b0, t0), (b1, t1) = a.cores[f"cpu{core}"], b.cores[f"cpu{core}"]
        return (b1 - b0) / max(1, t1 - t0)

    wall = b.t - a.t
    proxy_cpu = b.proxy_cpu - a.proxy_cpu
    p_busy = busy(proxy_core)
    return {"proxy_cpu_s": proxy_cpu, "mock_cpu_s": b.mock_cpu - a.mock_cpu,
            "proxy_core_busy": p_busy, "load_core_busy": busy(load_core),
            # load on the proxy's core that is not the proxy: other engineers' tests, the kernel...
            "proxy_core_other": None if p_busy is None else max(0.0, p_busy - proxy_cpu / max(wall, 1e-9))}


def listen_overflows() -> int:
    """TcpExt ListenOverflows: SYNs dropped because an accept queue (listen backlog) was full."""
    with contextlib.suppress(OSError, ValueError, IndexError):
        lines = [ln.split() for ln in Path("/proc/net/netstat").read_text().splitlines() if ln.startswith("TcpExt:")]
        return int(lines[1][lines[0].index("ListenOverflows")])
    return 0
