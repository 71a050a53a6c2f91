"""The failed-auth throttle per client IP (a Gateway service), and the per-IP checks of the routes outside
the pipeline. The count lives in admission's counters, so Redis shares it between replicas; a replica
that sees an IP cross `ip_limits.failed_auth_per_minute` tells the others over pub/sub. The HTTP side
(resolving the client IP, the middleware) is proxy/http/clientip.py.
"""

from __future__ import annotations

import math
import time
from typing import TYPE_CHECKING

from limits import RateLimitItemPerMinute

from proxy.admission.quotas import NAMESPACE, Window, fmt_duration
from proxy.core.errors import GatewayError
from proxy.infra.memo import Memo
from proxy.observability import metrics as m
from proxy.observability.logs import get_logger

if TYPE_CHECKING:
    from proxy.admission.counters import Counters
    from proxy.admission.stage import AdmissionStage
    from proxy.infra.redis_client import RedisClient

CHANNEL = "gw:ipblock"
log = get_logger("gateway.clientip")


class ClientGuard:
    """The failed-auth throttle and the per-IP checks of the routes outside the pipeline."""

    def __init__(self, failed_auth_per_minute: int, counters: Counters, *, admission: AdmissionStage | None = None,
                 ip_rpm: int | None = None, redis: RedisClient | None = None,
                 recorder: m.Recorder | None = None) -> None:
        self.limit = failed_auth_per_minute
        self.counters = counters
        self.admission = admission
        self.ip_rpm = ip_rpm
        self.redis = redis
        self.rec = recorder or m.Recorder()
        self.blocked: dict[str, float] = {}  # ip -> blocked until (time.time())
        self._windows: Memo[str, Window] = Memo(100_000)

    async def start(self) -> None:
        if self.redis is not None and self.limit:
            self.redis.subscribe(CHANNEL, self._on_message)

    async def close(self) -> None:
        return None

    # ------------------------------------------------------------ the throttle
    def blocked_for(self, ip: str) -> float:
        """Seconds this IP stays blocked, 0 when it is not."""
        until = self.blocked.get(ip)
        if until is None:
            return 0.0
        left = until - time.time()
        if left <= 0:
            del self.blocked[ip]
            return 0.0
        return left

    def block(self, ip: str, seconds: float) -> None:
        if len(self.blocked) >= 100_000:  # bounded: drop the expired, and everything if that is not enough
            now = time.time()
            self.blocked = {k: v for k, v in self.blocked.items() if v > now}
            if len(self.blocked) >= 100_000:
                self.blocked.clear()
        self.blocked[ip] = max(self.blocked.get(ip, 0.0), time.time() + seconds)

    def window(self, ip: str) -> Window:
        w = self._windows.get(ip)
        if w is None:
            item = RateLimitItemPerMinute(self.limit, namespace=NAMESPACE)
            w = self._windows.put(ip, Window.make(item, ("ip", ip, "all", "-", "failed_auth"), "requests",
                                                  "failed_auth", "ip", ip))
        return w

    async def failed(self, ip: str) -> None:
        """A wrong key came from `ip` (Authenticator.on_failure, admin auth): count it; at the limit, block."""
        if not self.limit:
            return
        w = self.window(ip)
        try:
            outcome = await self.counters.acquire((w,), [1], [], 0.0)
        except GatewayError:  # Redis down with fail_closed: the caller's 401/403 stands
            return
        if outcome is None:  # Redis down, fail_open: not counted
            return
        stats = outcome.stats[0]
        if outcome.failed_window < 0 and stats.used(w.expiry) < w.limit:
            return
        seconds = max(1.0, stats.retry_after(w, 1))  # until one more failure would fit again
        self.block(ip, seconds)
        log.warning("client_ip_blocked", client_ip=ip, failed_auth_per_minute=self.limit, seconds=round(seconds, 3))
        if self.redis is not None:
            await self.redis.publish(CHANNEL, f"{seconds:.3f} {ip}")  # a duration: replicas' clocks may differ

    def _on_message(self, data: bytes) -> None:
        seconds, _, ip = data.decode(errors="replace").partition(" ")
        try:
            self.block(ip, min(float(seconds), 3600.0))
        except ValueError:
            log.warning("bad_ipblock_message")

    def refuse(self, ip: str, seconds: float) -> GatewayError:
        if self.rec.enabled:
            m.RATE_LIMITED.labels("ip_failed_auth", "", "").inc()
        return GatewayError(
            429, f"Too many failed authentications from client IP {ip}: Limit {self.limit} per minute. "
            f"Please try again in {fmt_duration(seconds)}.", "requests", code="rate_limit_exceeded",
            headers={"Retry-After": str(max(1, math.ceil(seconds)))})
