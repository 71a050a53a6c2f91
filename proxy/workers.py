"""`gateway serve --workers N`: N processes sharing one port (SO_REUSEPORT).

Metrics stay correct across workers through prometheus-client's multiprocess mode: the parent
points PROMETHEUS_MULTIPROC_DIR at a fresh directory *before* any worker imports prometheus_client,
and any worker's `/metrics` aggregates every worker's files. In-process state (rate-limit windows,
cache) is per worker; configure `redis:` to share it.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import shutil
import signal
import tempfile
from collections.abc import Callable
from types import FrameType


def prepare_multiprocess_metrics() -> str:
    path = os.environ.get("PROMETHEUS_MULTIPROC_DIR") or tempfile.mkdtemp(prefix="gateway-metrics-")
    if os.path.isdir(path):
        for name in os.listdir(path):  # stale files from an earlier run would be summed in
            if name.endswith(".db"):
                os.unlink(os.path.join(path, name))
    os.makedirs(path, exist_ok=True)
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = path
    return path


def run_workers(n: int, serve_one: Callable[[], None]) -> int:
    """Start n worker processes running `serve_one`; forward SIGTERM/SIGINT; return the worst exit code."""
    owned_dir = "PROMETHEUS_MULTIPROC_DIR" not in os.environ
    metrics_dir = prepare_multiprocess_metrics()
    ctx = mp.get_context("fork")
    procs = [ctx.Process(target=serve_one, name=f"gateway-worker-{i}") for i in range(n)]
    for p in procs:
        p.start()

    def forward(signum: int, _: FrameType | None) -> None:
        for p in procs:
            if p.pid and p.is_alive():
                os.kill(p.pid, signum)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    codes = []
    for p in procs:
        p.join()
        codes.append(p.exitcode or 0)
        from prometheus_client import multiprocess

        if p.pid:
            multiprocess.mark_process_dead(p.pid, metrics_dir)
    if owned_dir:
        shutil.rmtree(metrics_dir, ignore_errors=True)
    return max(codes, default=0)
