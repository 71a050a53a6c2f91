"""Exact-match response cache: keys, backends (memory LRU / Redis), the pipeline stage, stream replay.

The cache is opt-in: without a `cache:` section (or with `enabled: false`) it is off, but an alias or
key may still turn it on, so the composition root always puts `build_cache`'s `ResponseCache` in the
pipeline; its per-request decision costs a few attribute reads while nothing turns it on.
"""

from __future__ import annotations

from proxy.cache.backend import Backend
from proxy.cache.memory import MemoryBackend
from proxy.cache.stage import Prices, ResponseCache
from proxy.config import GatewayConfig
from proxy.infra.redis_client import RedisClient
from proxy.observability import metrics as m

__all__ = ["Backend", "MemoryBackend", "ResponseCache", "build_cache"]


def build_cache(cfg: GatewayConfig, redis: RedisClient | None, prices: Prices, recorder: m.Recorder) -> ResponseCache:
    # `backend: redis` without `redis:` is refused by the config unless nothing in the file turns the
    # cache on; a database key that does then gets the in-process backend
    backend: Backend = MemoryBackend(cfg.cache.max_bytes, recorder)
    if cfg.cache.backend == "redis" and redis is not None:
        from proxy.cache.redis_backend import RedisBackend

        backend = RedisBackend(redis, recorder)
    return ResponseCache(cfg, backend, prices, recorder)
