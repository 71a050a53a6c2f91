"""HMAC request signing for keys with `signing: required` (the key alone is not enough: a stolen bearer key
cannot make requests without the signing secret, and a captured request cannot be sent again).

A signed request carries

    x-gateway-timestamp: <unix seconds>
    x-gateway-signature: v1=<hex HMAC-SHA256(signing secret, "<timestamp>.<METHOD>.<path>.<sha256 hex of body>")>

`path` is the request target as sent, query string included (`/v1/chat/completions`, `/v1/usage?since=7d`).
Refused with 401 (an OpenAI-format error saying which): headers missing (`signature_required`), a timestamp
outside the 5-minute window either way (`signature_expired`), a signature that does not match
(`invalid_signature`), or one seen before (`signature_replayed`). Signatures that verified are remembered
for twice the window (a timestamp at the window's far edge stays valid that long): in Redis with
`SET NX EX` when `redis:` is configured, so a request replayed to another replica is refused too; in a
bounded in-process set otherwise (and while Redis is down under `fail_open`).
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections import deque
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING

from proxy.core.errors import AUTHENTICATION, UNAVAILABLE, GatewayError

if TYPE_CHECKING:
    from proxy.infra.redis_client import RedisClient

TIMESTAMP_HEADER = "x-gateway-timestamp"
SIGNATURE_HEADER = "x-gateway-signature"
WINDOW = 300.0  # seconds either side of the gateway's clock
REDIS_PREFIX = "gw:sig:"
_DOWN = "down"


def sign(secret: str | bytes, timestamp: int | str, method: str, path: str, body: bytes) -> str:
    """The `x-gateway-signature` value for a request (what a client computes; the gateway compares)."""
    key = secret.encode() if isinstance(secret, str) else secret
    return "v1=" + _digest(key, str(timestamp), method, path, body)


def _digest(key: bytes, timestamp: str, method: str, path: str, body: bytes) -> str:
    message = f"{timestamp}.{method.upper()}.{path}.{hashlib.sha256(body).hexdigest()}".encode()
    return hmac.new(key, message, hashlib.sha256).hexdigest()


def _refuse(message: str, code: str) -> GatewayError:
    return GatewayError(401, message, AUTHENTICATION, code=code)


class LocalReplayCache:
    """Signatures seen in the last `ttl` seconds, bounded. One TTL for all, so insertion order is expiry order
    and expired entries leave from the front. Full of live entries it refuses (503) rather than forget one:
    forgetting would let that request be replayed."""

    def __init__(self, ttl: float, max_entries: int = 1_000_000, clock: Callable[[], float] = time.monotonic) -> None:
        self.ttl = ttl
        self.max_entries = max_entries
        self.clock = clock
        self._seen: set[str] = set()
        self._order: deque[tuple[float, str]] = deque()

    def first_use(self, sig: str) -> bool:
        now = self.clock()
        order, seen = self._order, self._seen
        while order and order[0][0] <= now:
            seen.discard(order.popleft()[1])
        if sig in seen:
            return False
        if len(seen) >= self.max_entries:
            raise GatewayError(503, "The gateway's replay cache for signed requests is full; try again shortly.",
                               UNAVAILABLE, code="replay_cache_full", headers={"Retry-After": "1"})
        seen.add(sig)
        order.append((now + self.ttl, sig))
        return True


class SignatureVerifier:
    def __init__(self, redis: RedisClient | None = None, *, window: float = WINDOW, max_entries: int = 1_000_000,
                 clock: Callable[[], float] = time.time) -> None:
        self.redis = redis
        self.window = window
        self.clock = clock
        self.local = LocalReplayCache(2 * window, max_entries)

    async def verify(self, key_id: str, secret: bytes, method: str, path: str, headers: Mapping[str, str],
                     body: bytes) -> None:
        """Raise a 401 GatewayError unless the headers sign exactly this request, fresh and for the first time."""
        ts, given = headers.get(TIMESTAMP_HEADER), headers.get(SIGNATURE_HEADER)
        if not ts or not given:
            raise _refuse(f"This API key requires signed requests: send `{TIMESTAMP_HEADER}` (unix seconds) and "
                          f"`{SIGNATURE_HEADER}: v1=<hex HMAC-SHA256 of \"timestamp.METHOD.path.sha256(body)\">`.",
                          "signature_required")
        ts = ts.strip()
        if not ts.isdigit() or len(ts) > 12:
            raise _refuse(f"`{TIMESTAMP_HEADER}` must be the time in unix seconds (an integer).", "invalid_signature")
        skew = int(ts) - self.clock()
        if abs(skew) > self.window:
            side = "ahead of" if skew > 0 else "behind"
            raise _refuse(f"`{TIMESTAMP_HEADER}` is outside the {self.window / 60:g}-minute window: it is "
                          f"{abs(skew):.0f} s {side} the gateway's clock. Sign each request with the current time.",
                          "signature_expired")
        expected = _digest(secret, ts, method, path, body)
        offered = [part.strip()[3:] for part in given.split(",") if part.strip().startswith("v1=")]
        # compare against every offered v1 value (constant time each): no early exit on the first mismatch
        if not sum(hmac.compare_digest(expected, o) for o in offered[:4]):
            raise _refuse(f"`{SIGNATURE_HEADER}` does not match this request (the timestamp, method, path and body "
                          "are signed).", "invalid_signature")
        if not await self._first_use(f"{key_id}:{expected}"):
            raise _refuse("This request's signature was already used: replay refused. Sign each request anew "
                          "(a new timestamp).", "signature_replayed")

    async def _first_use(self, entry: str) -> bool:
        redis = self.redis
        if redis is not None:
            ttl = int(2 * self.window)
            res = await redis.call("signature_replay",
                                   lambda: redis.client.set(REDIS_PREFIX + entry, b"1", nx=True, ex=ttl), _DOWN)
            if res != _DOWN:
                return bool(res)
            # Redis down under fail_open: this replica's own memory still refuses replays it saw
        return self.local.first_use(entry)
