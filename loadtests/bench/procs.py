"""Child processes: pinned to a core, output to a log file, stopped on exit however it comes.

The mock upstream, the bare pass-through (baseline) and gateways are started here, and a start returns
only once the server answers HTTP. Children also get SIGKILL from the kernel if the benchmark dies
(PR_SET_PDEATHSIG).
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import resource
import signal
import socket
import subprocess
import time
import urllib.error
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import yaml

from . import cpu
from .configs import HERE, HOST, PYTHON, ROOT, UPSTREAM_KEY, Variant, base_gateway_config, deep_merge
from .net import http

_PROCS: list[Proc] = []


def raise_nofile() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def _child_setup(core: int | None) -> Callable[[], None]:
    def setup() -> None:
        raise_nofile()
        if core is not None:
            os.sched_setaffinity(0, {core})  # what `taskset -c CORE` does before exec
        with contextlib.suppress(Exception):
            ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG

    return setup


class Proc:
    """A child process pinned to one core, its output in a log file; stopped on exit no matter what."""

    def __init__(self, name: str, argv: list[str], core: int | None, log: Path,
                 env: dict[str, str] | None = None) -> None:
        self.name, self.log = name, log
        with open(log, "wb") as out:
            self.popen = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                          cwd=ROOT, env=env, preexec_fn=_child_setup(core))
        _PROCS.append(self)

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def cpu_seconds(self) -> float:
        return cpu.cpu_seconds(self.pid)

    def memory_mib(self) -> tuple[float, float]:
        return cpu.memory_mib(self.pid)

    def output(self) -> str:
        try:
            return self.log.read_text(errors="replace")
        except OSError:
            return ""

    def tail(self, n: int = 20) -> str:
        return "\n".join(self.output().splitlines()[-n:])

    def wait(self, timeout: float) -> int:
        try:
            return self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            self.stop()
            raise RuntimeError(f"{self.name} did not finish within {timeout:.0f}s") from None

    def stop(self, grace: float = 5.0, sig: int = signal.SIGTERM) -> None:
        """`sig` (SIGKILL: a crash, as chaos.py's dying upstream), then SIGKILL after `grace` seconds."""
        if self.alive():
            with contextlib.suppress(ProcessLookupError):
                self.popen.send_signal(sig)
            try:
                self.popen.wait(grace)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(5)
        if self in _PROCS:
            _PROCS.remove(self)


def stop_all() -> None:
    for p in list(reversed(_PROCS)):
        with contextlib.suppress(Exception):
            p.stop(grace=2.0)


@contextlib.contextmanager
def running(proc: Proc) -> Iterator[Proc]:
    try:
        yield proc
    finally:
        proc.stop()


def _terminate(signum: int, _frame: Any) -> None:
    raise SystemExit(128 + signum)


def exit_on_signals() -> None:
    """SIGTERM and SIGHUP exit through the `finally` blocks that stop the children."""
    signal.signal(signal.SIGTERM, _terminate)
    signal.signal(signal.SIGHUP, _terminate)


def pick_cores() -> tuple[int | None, int | None]:
    """(proxy core, load core): the first two CPUs this process may use; (None, None) on a single CPU."""
    cpus = sorted(os.sched_getaffinity(0))
    return (cpus[0], cpus[1]) if len(cpus) >= 2 else (None, None)


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def wait_ready(proc: Proc, url: str, timeout: float = 30.0) -> None:
    """Until `url` answers anything over HTTP (a 404/405 is fine: the server is up)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not proc.alive():
            raise RuntimeError(f"{proc.name} exited with {proc.popen.returncode}:\n{proc.tail()}")
        try:
            http("GET", url, timeout=1.0)
            return
        except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
            time.sleep(0.1)
    raise RuntimeError(f"{proc.name} not ready after {timeout:.0f}s:\n{proc.tail()}")


def start_server(name: str, argv: list[str], core: int | None, log: Path, port: int, ready_path: str,
                 ready_timeout: float = 30.0) -> tuple[Proc, str]:
    """Start a server that listens on `port`; return once `ready_path` answers (else stop it and raise)."""
    proc = Proc(name, argv, core, log)
    url = f"http://{HOST}:{port}"
    try:
        wait_ready(proc, url + ready_path, ready_timeout)
    except BaseException:
        proc.stop()
        raise
    return proc, url


def start_mock(workdir: Path, core: int | None, port: int | None = None, name: str = "mock",
               args: Sequence[str] = ()) -> tuple[Proc, str]:
    """`gateway mock-upstream` (lorem replies); `args`: more of its options. Logs to `<name>.log`."""
    port = port or free_port()
    label = "mock upstream" if name == "mock" else f"mock upstream {name}"
    return start_server(label, [PYTHON, "-m", "proxy", "mock-upstream", "--host", HOST, "--port", str(port),
                                "--reply", "lorem", "--api-key", UPSTREAM_KEY, *args],
                        core, workdir / f"{name}.log", port, "/_mock/stats")


def configure_mock(mock_url: str, behaviour: dict[str, Any]) -> None:
    http("POST", mock_url + "/_mock/reset")
    status, _, data = http("POST", mock_url + "/_mock/config", behaviour)
    if status != 200:
        raise RuntimeError(f"mock config failed: {status} {data[:200]!r}")


def start_baseline(workdir: Path, upstream_url: str, core: int | None, port: int | None = None,
                   wrap: Sequence[str] = (), ready_timeout: float = 30.0) -> tuple[Proc, str]:
    """`wrap`: a command the proxy runs under (valgrind for loadtests/instructions.py)."""
    port = port or free_port()
    return start_server("baseline", [*wrap, PYTHON, str(HERE / "baseline_passthrough.py"), "--host", HOST,
                                     "--port", str(port), "--upstream", upstream_url + "/v1",
                                     "--upstream-key", UPSTREAM_KEY],
                        core, workdir / "baseline.log", port, "/", ready_timeout)


def start_gateway(workdir: Path, upstream_url: str, variant: Variant, core: int | None,
                  wrap: Sequence[str] = (), ready_timeout: float = 30.0) -> tuple[Proc, str]:
    """`variant`'s gateway on a migrated ledger; `wrap` as for start_baseline."""
    port = free_port()
    cfg = deep_merge(base_gateway_config(upstream_url, workdir, variant.name), variant.config)
    cfg_path = workdir / f"gateway-{variant.name}.yaml"
    cfg_path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    # migrated first, as a deploy does: a gateway starting on a migrated database never loads Alembic
    migrate = subprocess.run([PYTHON, "-m", "proxy", "migrate", "--config", str(cfg_path)], cwd=ROOT,
                             capture_output=True, text=True)
    if migrate.returncode != 0:
        raise RuntimeError(f"gateway migrate failed: {migrate.stderr.strip()[-500:]}")
    # the per-request JSON log lines go to stdout, i.e. to this log file
    return start_server(f"gateway[{variant.name}]", [*wrap, PYTHON, "-m", "proxy", "serve", "--config",
                                                     str(cfg_path), "--host", HOST, "--port", str(port)],
                        core, workdir / f"gateway-{variant.name}.log", port, "/healthz", ready_timeout)
