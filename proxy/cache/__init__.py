"""Exact-match response cache: keys, backends (memory LRU / Redis), the pipeline stage, stream replay.

The cache is opt-in: without a `cache:` section (or with `enabled: false`) it is off, but an alias or
key may still turn it on, so `install_cache(gateway)` always swaps the pipeline's `NoCache` for
`ResponseCache`, whose per-request decision costs a few attribute reads while nothing turns it on.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .backend import Backend
from .memory import MemoryBackend
from .stage import ResponseCache

if TYPE_CHECKING:
    from ..state import Gateway

__all__ = ["Backend", "MemoryBackend", "ResponseCache", "build_backend", "install_cache"]


def build_backend(gw: Gateway) -> Backend:
    cfg = gw.cfg
    # `backend: redis` without `redis:` is refused by the config unless nothing in the file turns the
    # cache on; a database key that does then gets the in-process backend
    if cfg.cache.backend == "redis":
        from ..redis_client import shared
        from .redis_backend import RedisBackend

        rc = shared(gw)
        if rc is not None:
            return RedisBackend(rc, gw.recorder)
    return MemoryBackend(cfg.cache.max_bytes, gw.recorder)


def install_cache(gw: Gateway) -> ResponseCache:
    """Wire the cache stage into a built gateway; `gw.extras["cache"]` is what the admin API uses."""
    stage = ResponseCache(gw.cfg, build_backend(gw), gw.pipeline, gw.recorder)
    gw.pipeline.cache = stage
    gw.extras["cache"] = stage
    gw.services.append(stage)
    return stage
