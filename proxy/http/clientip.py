"""Who is calling, by address: the client IP behind load balancers, and the per-IP guards on every route.

* `ClientIPResolver`: with `listen.trusted_proxies` set and the TCP peer one of them, the client is the
  right-most untrusted address of `X-Forwarded-For` (or, without that header, of RFC 7239 `Forwarded:
  for=`): entries left of it were written by the client and prove nothing. A malformed entry on the way
  means the header cannot be trusted: the peer is used. Without trusted proxies the peer is the client.
* `ClientGuard` (a Gateway service) and its middleware: the resolved IP replaces `request.remote` for the
  handlers (so ip_limits, logs, the ledger and the audit log all see it); an IP over
  `ip_limits.failed_auth_per_minute` wrong keys gets 429 on every route until its window has room again
  (the count lives in admission's counters, so Redis shares it between replicas, and a replica that sees
  an IP cross the limit tells the others over pub/sub); `ip_limits.rpm` also covers the routes outside
  the pipeline (/admin/*, /v1/usage, /v1/models).
"""

from __future__ import annotations

import ipaddress
import math
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any

from aiohttp import web
from limits import RateLimitItemPerMinute

from proxy.admission.quotas import NAMESPACE, Window, fmt_duration
from proxy.config import IPNetwork
from proxy.core.errors import GatewayError
from proxy.observability import metrics as m
from proxy.observability.logs import get_logger

if TYPE_CHECKING:
    from proxy.admission.counters import Counters
    from proxy.admission.stage import AdmissionStage
    from proxy.infra.redis_client import RedisClient

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
CHANNEL = "gw:ipblock"
# authenticated routes outside the request pipeline: ip_limits.rpm is checked here for them (the pipeline
# routes check it per call, batch items included, in admission.admit_ip)
OUTSIDE_PIPELINE = ("/admin/", "/v1/usage", "/v1/models")
# liveness/readiness/scrapes come from the infrastructure, not from key holders: never blocked
PROBES = frozenset({"/healthz", "/readyz", "/metrics", "/health/providers"})

log = get_logger("gateway.clientip")


def parse_hop(text: str) -> IPAddress | None:
    """One X-Forwarded-For / Forwarded `for=` value -> an address; None when it is not one (RFC 7239 also
    allows `unknown` and obfuscated `_names`). Accepts `1.2.3.4:80`, `[2001:db8::1]:443`, quotes."""
    text = text.strip().strip('"').strip()
    if text.startswith("["):
        end = text.find("]")
        if end < 0:
            return None
        text = text[1:end]
    elif text.count(":") == 1:  # IPv4 with a port (a bare IPv6 has at least two colons)
        text = text.partition(":")[0]
    try:
        ip = ipaddress.ip_address(text)
    except ValueError:
        return None
    return (ip.ipv4_mapped or ip) if isinstance(ip, ipaddress.IPv6Address) else ip


def forwarded_for(values: Sequence[str]) -> list[str] | None:
    """The `for=` of each element of RFC 7239 `Forwarded` headers, in order; None when an element has none
    (that hop did not say who it forwarded for: the chain cannot be followed)."""
    out = []
    for value in values:
        for element in value.split(","):
            found = None
            for pair in element.split(";"):
                name, eq, v = pair.partition("=")
                if eq and name.strip().lower() == "for":
                    found = v
            if found is None:
                return None
            out.append(found)
    return out


class ClientIPResolver:
    def __init__(self, trusted: Sequence[IPNetwork]) -> None:
        self.trusted = tuple(trusted)
        self._peers: dict[str, bool] = {}  # peer text -> trusted? (a handful of load balancers)

    def is_trusted(self, ip: IPAddress) -> bool:
        return any(ip in net for net in self.trusted)  # a v4 address is never in a v6 network (no error)

    def peer_trusted(self, peer: str) -> bool:
        ok = self._peers.get(peer)
        if ok is None:
            ip = parse_hop(peer)
            ok = ip is not None and self.is_trusted(ip)
            if len(self._peers) >= 10_000:
                self._peers.clear()
            self._peers[peer] = ok
        return ok

    def __call__(self, request: web.BaseRequest) -> str:
        peer = request.remote or ""
        if not self.peer_trusted(peer):
            return peer  # a direct client: whatever it put in the headers is its own claim
        headers = request.headers
        hops: list[str] | None = None
        xff = headers.getall("X-Forwarded-For", None)
        if xff:
            hops = [hop for value in xff for hop in value.split(",")]
        elif fwd := headers.getall("Forwarded", None):
            hops = forwarded_for(fwd)
        return self.walk(hops, peer) if hops else peer

    def walk(self, hops: list[str], peer: str) -> str:
        """Right to left, skipping our own proxies: the first address that is not one is the client."""
        last: IPAddress | None = None
        for hop in reversed(hops):
            ip = parse_hop(hop)
            if ip is None:
                return peer
            if not self.is_trusted(ip):
                return str(ip)
            last = ip
        return str(last) if last is not None else peer  # every hop is ours: the farthest one asked


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
        self._windows: dict[str, Window] = {}

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
            if len(self._windows) >= 100_000:
                self._windows.clear()
            item = RateLimitItemPerMinute(self.limit, namespace=NAMESPACE)
            w = self._windows[ip] = Window.make(item, ("ip", ip, "all", "-", "failed_auth"), "requests",
                                                "failed_auth", "ip", ip)
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

    # ------------------------------------------------------------ the middleware
    def middleware(self, resolver: ClientIPResolver | None) -> Callable[..., Awaitable[web.StreamResponse]]:
        blocked, ip_rpm, admission = self.blocked_for, self.ip_rpm, self.admission

        @web.middleware
        async def client_guard(request: web.Request, handler: Any) -> web.StreamResponse:
            ip = request.remote or ""
            if resolver is not None:
                resolved = resolver(request)
                if resolved != ip:  # handlers read request.remote: ip_limits, logs, ledger, audit see the client
                    request = request.clone(remote=resolved)
                    ip = resolved
            if self.blocked and (left := blocked(ip)) and request.path not in PROBES:
                raise self.refuse(ip, left)
            if ip_rpm and admission is not None and request.path.startswith(OUTSIDE_PIPELINE):
                await admission.admit_client_ip(ip)
            return await handler(request)  # type: ignore[no-any-return]

        return client_guard
