"""Exact-match response cache: keys, backends (memory LRU / Redis), the pipeline stage, stream replay.

`build_cache` makes the stage the composition root puts in the pipeline when `cache.enabled`; with the
cache off the pipeline keeps `NoCache` and nothing here runs on the request path.
"""

from __future__ import annotations

from proxy.cache.backend import Backend
from proxy.cache.memory import MemoryBackend
from proxy.cache.stage import Prices, ResponseCache
from proxy.config import ConfigError, GatewayConfig
from proxy.infra.redis_client import RedisClient
from proxy.observability import metrics as m

__all__ = ["Backend", "MemoryBackend", "ResponseCache", "build_cache"]


def build_cache(cfg: GatewayConfig, redis: RedisClient | None, prices: Prices, recorder: m.Recorder) -> ResponseCache:
    backend: Backend
    if cfg.cache.backend == "redis":
        from proxy.cache.redis_backend import RedisBackend

        if redis is None:
            raise ConfigError("invalid gateway config:\n  cache.backend: redis needs a top-level `redis: {url}`")
        backend = RedisBackend(redis, recorder)
    else:
        backend = MemoryBackend(cfg.cache.max_bytes, recorder)
    return ResponseCache(cfg, backend, prices, recorder)
