"""Exact-match response cache: keys, backends (memory LRU / Redis), the pipeline stage, stream replay.

`install_cache(gateway)` swaps the pipeline's `NoCache` for `ResponseCache` when `cache.enabled`; with
the cache off nothing here runs on the request path.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from proxy.cache.backend import Backend
from proxy.cache.memory import MemoryBackend
from proxy.cache.stage import ResponseCache
from proxy.config import ConfigError

if TYPE_CHECKING:
    from proxy.gateway import Gateway

__all__ = ["Backend", "MemoryBackend", "ResponseCache", "build_backend", "install_cache"]


def build_backend(gw: Gateway) -> Backend:
    cfg = gw.cfg
    if cfg.cache.backend == "redis":
        from proxy.cache.redis_backend import RedisBackend
        from proxy.infra.redis_client import shared

        rc = shared(gw)
        if rc is None:
            raise ConfigError("invalid gateway config:\n  cache.backend: redis needs a top-level `redis: {url}`")
        return RedisBackend(rc, gw.recorder)
    return MemoryBackend(cfg.cache.max_bytes, gw.recorder)


def install_cache(gw: Gateway) -> ResponseCache | None:
    """Wire the cache stage into a built gateway; `gw.extras["cache"]` is what the admin API uses."""
    if not gw.cfg.cache.enabled:
        return None
    stage = ResponseCache(gw.cfg, build_backend(gw), gw.pipeline, gw.recorder)
    gw.pipeline.cache = stage
    gw.extras["cache"] = stage
    gw.services.append(stage)
    return stage
