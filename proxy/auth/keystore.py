"""Virtual keys from the database for auth, cached in-process so the hot path does no query.

`KeyStore.lookup(sha256)` is the Authenticator's `lookup`: a dict hit for known keys; a miss asks the
ledger database once (concurrent misses for the same digest share that query) and caches the answer —
found keys for `ttl`, unknown digests briefly (so a key sprayer costs one query per digest per
`negative_ttl`, not one per request).

Changes must reach every replica fast (a revoked key stops at once):
* the replica that made the change drops its entries immediately (`changed()`);
* with Redis, it publishes the key id on `gw:keys`, and every replica drops its entries within
  milliseconds; after a pub/sub reconnect or a Redis recovery (messages may be lost) the whole cache
  is dropped;
* every replica also polls `keys_changed_since` (1 s without Redis, 5 s with it as a safety net).
A key whose previous secret is in its rotation grace period is cached under the old digest only until
the grace ends. Expiry (`expires_at`) is checked by auth on every request, whatever the cache says.
"""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from proxy.config.agents import OptimizePolicy
from proxy.config.base import Budget, CachePolicy, Limits
from proxy.core.errors import UNAVAILABLE, GatewayError
from proxy.core.identity import KeyInfo
from proxy.infra.asyncutil import SingleFlight, cancel_and_wait
from proxy.observability import metrics as m
from proxy.observability.logs import get_logger

if TYPE_CHECKING:
    from proxy.infra.redis_client import RedisClient
    from proxy.ledger import LedgerStore

CHANNEL = "gw:keys"
log = get_logger("gateway.keystore")


def key_info(row: dict[str, Any]) -> KeyInfo:
    """A KeyInfo from a ledger key record (no bearer secret in it: records carry no hashes; the auth
    lookup's record carries the signing secret of a key with `signing: required`). A key owned by a user
    carries the user's limits and budget (`owner_*`, find_key_by_hash); a disabled or deleted owner
    disables the key."""
    user_id = row.get("user_id")
    owner_gone = user_id is not None and (row.get("owner_email") is None or row.get("owner_deleted_at") is not None)
    return KeyInfo(
        id=row["id"], name=row["name"], models=list(row.get("models") or ["*"]),
        limits=Limits.model_validate(row["limits"]) if row.get("limits") else None,
        budget=Budget.model_validate(row["budget"]) if row.get("budget") else None,
        user=user_id or row.get("user"), team=row.get("team"), metadata=dict(row.get("metadata") or {}),
        expires_at=row.get("expires_at"),
        cache=CachePolicy.model_validate(row["cache"]) if row.get("cache") else None,
        optimize=OptimizePolicy.model_validate(row["optimize"]) if row.get("optimize") else None,
        disabled=bool(row.get("disabled")) or owner_gone or bool(row.get("owner_disabled")), source="db",
        user_id=user_id,
        user_limits=Limits.model_validate(row["owner_limits"]) if row.get("owner_limits") else None,
        user_budget=Budget.model_validate(row["owner_budget"]) if row.get("owner_budget") else None,
        user_label=row.get("owner_email"),
        signing_secret=row["signing_secret"].encode() if row.get("signing_secret") else None,
    )


class KeyStore:
    def __init__(self, store: LedgerStore, redis: RedisClient | None = None, *, ttl: float = 60.0,
                 negative_ttl: float = 2.0, poll_interval: float | None = None, max_entries: int = 100_000,
                 lookup_timeout: float = 5.0) -> None:
        self.store = store
        self.redis = redis
        self.ttl = ttl
        self.negative_ttl = negative_ttl
        self.poll_interval = poll_interval if poll_interval is not None else (5.0 if redis else 1.0)
        self.max_entries = max_entries
        self.lookup_timeout = lookup_timeout
        self._cache: dict[str, tuple[KeyInfo | None, float]] = {}  # digest -> (info, valid until, monotonic)
        self._by_id: dict[str, set[str]] = {}
        self._lookups: SingleFlight[KeyInfo | None] = SingleFlight()  # concurrent misses of one digest
        self._last_seen: datetime | None = None
        self._seen_versions: dict[str, datetime] = {}
        self._poller: asyncio.Task[None] | None = None

    # ------------------------------------------------------------ lifecycle
    async def start(self) -> None:
        # changes before we started do not matter (the cache is empty); the overlap covers clock skew
        self._last_seen = datetime.now(UTC) - timedelta(seconds=5)
        if self.redis is not None:
            self.redis.subscribe(CHANNEL, self._on_message, on_connect=self.clear)
            self.redis.on_recover.append(self.clear)
        self._poller = asyncio.get_running_loop().create_task(self._poll(), name="keystore-poll")

    async def close(self) -> None:
        await cancel_and_wait(self._poller)
        self._poller = None

    # ------------------------------------------------------------ auth path
    async def lookup(self, digest: str) -> KeyInfo | None:
        entry = self._cache.get(digest)
        if entry is not None and entry[1] > time.monotonic():
            return entry[0]
        info, _ = await self._lookups.run(digest, lambda: self._fetch(digest, entry))
        return info

    async def _fetch(self, digest: str, stale: tuple[KeyInfo | None, float] | None) -> KeyInfo | None:
        try:
            row = await asyncio.wait_for(self.store.find_key_by_hash(digest), self.lookup_timeout)
        except Exception as err:
            m.BACKEND_ERRORS.labels("db", "key_lookup").inc()
            if stale is not None and stale[0] is not None:
                # the database is down: a key we knew (and were told nothing bad about) keeps working
                return stale[0]
            log.warning("key_lookup_failed", error=f"{type(err).__name__}: {err}")
            raise GatewayError(503, "The key store is unavailable; try again shortly.", UNAVAILABLE,
                               code="key_store_unavailable", headers={"Retry-After": "1"}) from None
        now = time.monotonic()
        if row is None:
            self._put(digest, None, now + self.negative_ttl)
            return None
        info = key_info(row)
        until = now + self.ttl
        if row.get("matched_previous") and row.get("previous_expires_at") is not None:
            left = (row["previous_expires_at"] - datetime.now(UTC)).total_seconds()
            until = min(until, now + max(0.0, left))
        self._put(digest, info, until)
        return info

    def _put(self, digest: str, info: KeyInfo | None, until: float) -> None:
        if len(self._cache) >= self.max_entries:
            self.clear()  # crude but bounded; a full cache refills from the database
        self._cache[digest] = (info, until)
        if info is not None:
            self._by_id.setdefault(info.id, set()).add(digest)

    # ------------------------------------------------------------ invalidation
    def clear(self) -> None:
        self._cache.clear()
        self._by_id.clear()

    def invalidate(self, key_id: str) -> None:
        """Forget a key (all its digests) and every negative entry (it may be a key just created)."""
        for digest in self._by_id.pop(key_id, ()):
            self._cache.pop(digest, None)
        for digest in [d for d, (info, _) in self._cache.items() if info is None]:
            self._cache.pop(digest, None)

    async def changed(self, key_id: str) -> None:
        """Called by the admin API after it changed a key: here now, other replicas via Redis."""
        self.invalidate(key_id)
        if self.redis is not None:
            await self.redis.publish(CHANNEL, key_id)

    def _on_message(self, data: bytes) -> None:
        key_id = data.decode(errors="replace")
        if key_id == "*":
            self.clear()
        else:
            self.invalidate(key_id)

    async def _poll(self) -> None:
        while True:
            await asyncio.sleep(self.poll_interval)
            if not self._by_id:
                # nothing cached that a change could make stale (unknown digests expire on their own
                # within negative_ttl): no query; the next one covers the gap since _last_seen
                continue
            try:
                await self.poll_once()
            except Exception as err:
                m.BACKEND_ERRORS.labels("db", "key_poll").inc()
                log.debug("key_poll_failed", error=f"{type(err).__name__}: {err}")

    async def poll_once(self) -> None:
        since = self._last_seen - timedelta(seconds=5) if self._last_seen else None
        rows = await self.store.keys_changed_since(since)
        for row in rows:
            updated = row["updated_at"]
            if self._seen_versions.get(row["id"]) == updated:
                continue  # seen in the overlap of the previous poll
            self._seen_versions[row["id"]] = updated
            self.invalidate(row["id"])
            if self._last_seen is None or updated > self._last_seen:
                self._last_seen = updated
        if len(self._seen_versions) > 10_000:
            self._seen_versions.clear()
