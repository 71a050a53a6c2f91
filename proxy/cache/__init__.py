"""Exact-match response cache: keys, backends (memory LRU / Redis), the pipeline stage, stream replay.

`install_cache(gateway)` swaps the pipeline's `NoCache` for `ResponseCache` when `cache.enabled`; with
the cache off nothing here runs on the request path.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..config import ConfigError
from .backend import Backend
from .memory import MemoryBackend
from .stage import ResponseCache

if TYPE_CHECKING:
    from ..state import Gateway

__all__ = ["Backend", "MemoryBackend", "ResponseCache", "build_backend", "install_cache"]


def build_backend(gw: Gateway) -> Backend:
    cfg = gw.cfg
    if cfg.cache.backend == "redis":
        from ..redis_client import shared
        from .redis_backend import RedisBackend

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
