"""What the benchmarks run: paths, keys, the measured gateway's config and its variants, the mock's replies."""

from __future__ import annotations

import copy
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
HERE = ROOT / "loadtests"
DOCS = ROOT / "docs" / "benchmarks.md"
RESULTS = HERE / "results"
HOST = "127.0.0.1"
PYTHON = sys.executable
GATEWAY_KEY = "sk-bench-gateway"
UPSTREAM_KEY = "sk-bench-upstream"
MODEL = "bench"

# mock reply sizes: non-stream 20 tokens; streams = role chunk + 18 tokens + finish chunk = 20 chunks
CORE_MOCK = {"reply": "lorem", "reply_tokens": 20, "tokens_per_s": 0.0}
STREAM_MOCK = {"reply": "lorem", "reply_tokens": 18, "tokens_per_s": 0.0}
CONCURRENT_MOCK = {"reply": "lorem", "reply_tokens": 10, "tokens_per_s": 10.0}


def bench_key(**extra: Any) -> dict[str, Any]:
    return {"name": "bench", "key": GATEWAY_KEY, "models": ["*"], **extra}


def base_gateway_config(upstream_url: str, workdir: Path, name: str = "gateway") -> dict[str, Any]:
    """The measured gateway: auth, metrics, one JSON log line per request (to a file); cache off."""
    return {
        "listen": {"host": HOST, "shutdown_timeout": 1},
        "providers": {"up": {"type": "openai", "base_url": upstream_url + "/v1", "api_key": UPSTREAM_KEY}},
        "models": {MODEL: {"route": [{"provider": "up", "model": "mock-1"}]}},
        "keys": [bench_key()],
        "metrics": {"enabled": True},
        "logging": {"requests": True, "format": "json", "level": "info"},
        "cache": {"enabled": False},
        "database": {"url": f"sqlite:///{workdir}/ledger-{name}.db"},
    }


@dataclass(frozen=True)
class Variant:
    """A gateway configuration to measure: `config` is deep-merged into base_gateway_config()."""

    name: str
    config: dict[str, Any] = field(default_factory=dict)
    note: str = ""
    targets: bool = True  # held to the req/s and CPU-per-request targets


VARIANTS: list[Variant] = [
    Variant("gateway", {}, "auth + metrics + per-request JSON log to a file, cache off"),
    Variant("metrics-off", {"metrics": {"enabled": False}}, "Prometheus metrics disabled"),
    Variant("logs-off", {"logging": {"requests": False}}, "per-request log line disabled"),
    # quotas are issue #4's, held to its own budget (overhead over quotas off, loadtests/feature_bench.py)
    Variant("quotas-on", {"keys": [bench_key(limits={"rpm": 100_000_000, "tpm": 10_000_000_000})]},
            "key with rpm + tpm limits far above the load; context (#4's own target is in feature_bench)",
            targets=False),
    Variant("cache-hit", {"cache": {"enabled": True, "backend": "memory"}},
            "memory cache on; every request is identical, so all but the first can hit"),
]


def deep_merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for k, v in over.items():
        out[k] = deep_merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else copy.deepcopy(v)
    return out
