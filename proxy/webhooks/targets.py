"""Safe webhook destinations: no loopback, link-local, private or otherwise non-public address unless
`webhooks.allow_private_targets: true`.

Checked when a subscription is created or changed, and again at every delivery against the addresses
the connection really uses: `GuardedResolver` is the delivery session's resolver, so a name that
resolved to a public address when it was checked and to 127.0.0.1 later (DNS rebinding) is refused at
connect time. Literal IP hosts never reach a resolver, so `literal_refusal` checks them per attempt.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from typing import Any
from urllib.parse import urlsplit

from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import DefaultResolver

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


class UnsafeTarget(OSError):
    """An address the gateway refuses to send to (an OSError, so aiohttp reports a connection error)."""


def refused(addr: IPAddress) -> str | None:
    """Why `addr` is not a public unicast address, or None when it is."""
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        addr = addr.ipv4_mapped
    for kind in ("loopback", "link_local", "private", "multicast", "reserved", "unspecified"):
        if getattr(addr, f"is_{kind}"):
            return f"{addr} is a {kind.replace('_', '-')} address"
    if not addr.is_global:  # shared address space (100.64/10), documentation ranges, ...
        return f"{addr} is not a public address"
    return None


def literal_refusal(url: str) -> str | None:
    host = urlsplit(url).hostname or ""
    try:
        addr = ipaddress.ip_address(host)
    except ValueError:
        return None
    return refused(addr)


async def url_refusal(url: str) -> str | None:
    """Why `url`'s host must not be a webhook target (it resolves to a non-public address), or None.
    A name that does not resolve now is accepted: deliveries check it again when they connect."""
    if (why := literal_refusal(url)) is not None:
        return why
    parts = urlsplit(url)
    host = parts.hostname or ""
    try:
        ipaddress.ip_address(host)
        return None  # a public literal
    except ValueError:
        pass
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(host, parts.port or 443, type=socket.SOCK_STREAM)
    except OSError:
        return None
    for info in infos:
        if (why := refused(ipaddress.ip_address(info[4][0].split("%", 1)[0]))) is not None:
            return f"{host} resolves to {why}"
    return None


class GuardedResolver(AbstractResolver):
    """The default resolver, refusing names that resolve to any non-public address."""

    def __init__(self) -> None:
        self._inner = DefaultResolver()

    async def resolve(self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
                      ) -> list[ResolveResult]:
        results = await self._inner.resolve(host, port, family)
        for r in results:
            if (why := refused(ipaddress.ip_address(r["host"].split("%", 1)[0]))) is not None:
                raise UnsafeTarget(f"{host} resolves to a refused address ({why})")
        return results

    async def close(self) -> None:
        await self._inner.close()


def describe(exc: BaseException) -> str:
    """A short error text for the deliveries list (never a URL with its query, which may hold a token)."""
    inner: Any = exc
    while getattr(inner, "__cause__", None) is not None and not isinstance(inner, UnsafeTarget):
        inner = inner.__cause__
    if isinstance(inner, UnsafeTarget):
        return f"refused target: {inner}"
    if isinstance(exc, TimeoutError | asyncio.TimeoutError):
        return "timeout"
    return type(exc).__name__
