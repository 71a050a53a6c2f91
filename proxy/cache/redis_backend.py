"""Redis backend (`cache: {backend: redis}`), over the gateway's one shared `RedisClient`.

Layout: `<prefix>e:<key>` holds one encoded entry with a Redis TTL; `<prefix>a:<alias>` is a set of
the keys stored for an alias, for invalidation by alias (a stale member costs one no-op DEL).

Redis being down must never fail a request, whatever `redis.failure_mode` says for quotas: request-path
operations go through `RedisClient.quietly`, which counts the error in
`gateway_backend_errors{backend="redis"}`, marks Redis down (only once the client's reconnect-and-retry
failed too: a connection broken by a Redis restart is not an outage) and answers "no entry". Admin
operations raise `BackendUnavailable` (503).
"""

from __future__ import annotations

import math
import time
from collections.abc import Awaitable, Callable
from typing import Any

from proxy.cache.backend import BackendUnavailable, Entry, decode, encode
from proxy.infra.redis_client import REDIS_ERRORS, RedisClient
from proxy.observability import metrics as m

_DEL_BATCH = 500


class RedisBackend:
    name = "redis"

    def __init__(self, rc: RedisClient, recorder: m.Recorder | None = None, prefix: str = "gw:cache:") -> None:
        self.rc = rc
        self.prefix = prefix
        self._metrics = recorder is not None and recorder.enabled

    # ------------------------------------------------------------ request path (never raises)
    async def get(self, key: str) -> Entry | None:
        client = self.rc.client
        name = self.prefix + "e:" + key
        raw = await self.rc.quietly("cache_get", lambda: client.get(name), None)
        if raw is None:
            return None
        try:
            return decode(raw)
        except (ValueError, KeyError, TypeError):  # written by an incompatible version: a miss
            if self._metrics:
                m.BACKEND_ERRORS.labels("redis", "cache_decode").inc()
            return None

    async def set(self, key: str, entry: Entry) -> None:
        ttl = math.ceil(entry.expires - time.time())
        if ttl <= 0:
            return

        async def write() -> None:
            async with self.rc.client.pipeline(transaction=False) as pipe:
                pipe.set(self.prefix + "e:" + key, encode(entry), ex=ttl)
                for alias in entry.aliases:
                    akey = self.prefix + "a:" + alias
                    pipe.sadd(akey, key)
                    # the index lives as long as its longest-lived entry
                    pipe.expire(akey, ttl, nx=True)
                    pipe.expire(akey, ttl, gt=True)
                await pipe.execute()

        await self.rc.quietly("cache_set", write, None)

    # ------------------------------------------------------------ admin path (raises BackendUnavailable)
    async def delete(self, key: str) -> bool:
        client = self.rc.client
        return bool(await self._admin("cache_delete", lambda: client.delete(self.prefix + "e:" + key)))

    async def clear_alias(self, alias: str) -> int:
        client = self.rc.client
        akey = self.prefix + "a:" + alias
        members: set[bytes] = await self._admin("cache_clear", lambda: client.smembers(akey))
        keys = [self.prefix + "e:" + k.decode() for k in members]
        deleted = 0
        for i in range(0, len(keys), _DEL_BATCH):
            batch = keys[i:i + _DEL_BATCH]
            deleted += int(await self._admin("cache_clear", lambda b=batch: client.delete(*b)))
        await self._admin("cache_clear", lambda: client.delete(akey))
        return deleted

    async def clear(self) -> int:
        client = self.rc.client

        async def sweep() -> int:
            entries, batch = 0, []
            async for k in client.scan_iter(match=self.prefix + "*", count=1000):
                name = k.decode()
                entries += name.startswith(self.prefix + "e:")
                batch.append(name)
                if len(batch) >= _DEL_BATCH:
                    await client.delete(*batch)
                    batch = []
            if batch:
                await client.delete(*batch)
            return entries

        return int(await self._admin("cache_clear", sweep))

    async def close(self) -> None:
        return None  # the shared client is a gateway service of its own

    async def _admin(self, op: str, fn: Callable[[], Awaitable[Any]]) -> Any:
        # tried even while the shared client thinks Redis is down: an operator is asking explicitly
        try:
            res = await fn()
        except REDIS_ERRORS as err:
            self.rc.failed(op, err)
            raise BackendUnavailable(f"redis: {type(err).__name__}") from None
        if not self.rc.up:
            self.rc.recovered()
        return res
