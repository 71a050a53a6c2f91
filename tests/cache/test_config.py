"""The cache's slice of gateway.yaml."""

from __future__ import annotations

import pytest

from proxy.app import build_gateway
from proxy.cache.memory import MemoryBackend
from proxy.config import ConfigError, parse_config

MODELS = {"providers": {"mock": {"type": "mock"}},
          "models": {"demo": {"route": [{"provider": "mock", "model": "m"}], "cache": {"ttl": "1h"}},
                     "off": {"route": [{"provider": "mock", "model": "m"}], "cache": {"enabled": False}}},
          "keys": [{"name": "k", "key": "sk-k", "cache": {"ttl": "30s"}}]}


def test_defaults_and_units() -> None:
    cfg = parse_config({**MODELS, "cache": {"max_bytes": "64MiB"}}, env={})
    assert (cfg.cache.enabled, cfg.cache.backend, cfg.cache.ttl) == (True, "memory", 7 * 86400)
    assert cfg.cache.max_bytes == 64 * 1024 * 1024
    assert cfg.models["demo"].cache.ttl == 3600 and cfg.models["off"].cache.enabled is False  # type: ignore[union-attr]
    assert cfg.keys[0].cache.ttl == 30  # type: ignore[union-attr]
    assert (cfg.batch.max_items, cfg.batch.max_concurrency) == (100, 16)
    stage = build_gateway(cfg).cache
    assert isinstance(stage.backend, MemoryBackend) and stage.backend.max_bytes == 64 * 1024 * 1024
    assert stage.aliases["demo"].ttl == 3600 and not stage.aliases["off"].enabled


@pytest.mark.parametrize("cache", [{"backend": "redis"}, {"ttl": "soon"}, {"max_bytes": "lots"},
                                   {"backend": "memcached"}])
def test_bad_cache_config_is_named(cache: dict[str, str]) -> None:
    with pytest.raises(ConfigError, match="cache"):
        parse_config({**MODELS, "cache": cache}, env={})


def test_redis_backend_without_redis_is_fine_when_cache_is_off() -> None:
    cfg = parse_config({"cache": {"enabled": False, "backend": "redis"}}, env={})
    assert isinstance(build_gateway(cfg).cache.backend, MemoryBackend)


def test_cache_is_off_without_a_section() -> None:
    assert parse_config(MODELS, env={}).cache.enabled is False
    assert parse_config({**MODELS, "cache": {}}, env={}).cache.enabled is True
