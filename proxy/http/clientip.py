"""Who is calling, by address: the client IP behind load balancers, and the per-IP guards on every route.

* `ClientIPResolver`: with `listen.trusted_proxies` set and the TCP peer one of them, the client is the
  right-most untrusted address of `X-Forwarded-For` (or, without that header, of RFC 7239 `Forwarded:
  for=`): entries left of it were written by the client and prove nothing. A malformed entry on the way
  means the header cannot be trusted: the peer is used. Without trusted proxies the peer is the client.
* `guard_middleware` over admission's `ClientGuard`: the resolved IP replaces `request.remote` for the
  handlers (so ip_limits, logs, the ledger and the audit log all see it); an IP over
  `ip_limits.failed_auth_per_minute` wrong keys gets 429 on every route until its window has room again
  (the count lives in admission's counters, so Redis shares it between replicas, and a replica that sees
  an IP cross the limit tells the others over pub/sub); `ip_limits.rpm` also covers the routes outside
  the pipeline (/admin/*, /v1/usage, /v1/models).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from aiohttp import web

from proxy.admission.clientguard import ClientGuard
from proxy.config.base import IPNetwork
from proxy.infra.memo import Memo
from proxy.observability.logs import get_logger

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
# authenticated routes outside the request pipeline: ip_limits.rpm is checked here for them (the pipeline
# routes check it per call, batch items included, in admission.admit_ip)
OUTSIDE_PIPELINE = ("/admin/", "/v1/usage", "/v1/models", "/ui/api/")
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
        self._peers: Memo[str, bool] = Memo(10_000)  # peer text -> trusted? (a handful of load balancers)

    def is_trusted(self, ip: IPAddress) -> bool:
        return any(ip in net for net in self.trusted)  # a v4 address is never in a v6 network (no error)

    def peer_trusted(self, peer: str) -> bool:
        ok = self._peers.get(peer)
        if ok is None:
            ip = parse_hop(peer)
            ok = ip is not None and self.is_trusted(ip)
            self._peers.put(peer, ok)
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


def guard_middleware(guard: ClientGuard,
                     resolver: ClientIPResolver | None) -> Callable[..., Awaitable[web.StreamResponse]]:
    """The resolved IP replaces `request.remote` for the handlers; a blocked IP gets 429 on every route
    but the probes; `ip_limits.rpm` covers the routes outside the pipeline."""
    blocked, ip_rpm, admission = guard.blocked_for, guard.ip_rpm, guard.admission

    @web.middleware
    async def client_guard(request: web.Request, handler: Any) -> web.StreamResponse:
        ip = request.remote or ""
        if resolver is not None:
            resolved = resolver(request)
            if resolved != ip:  # handlers read request.remote: ip_limits, logs, ledger, audit see the client
                request = request.clone(remote=resolved)
                ip = resolved
        if guard.blocked and (left := blocked(ip)) and request.path not in PROBES:
            raise guard.refuse(ip, left)
        if ip_rpm and admission is not None and request.path.startswith(OUTSIDE_PIPELINE):
            await admission.admit_client_ip(ip)
        return await handler(request)  # type: ignore[no-any-return]

    return client_guard
