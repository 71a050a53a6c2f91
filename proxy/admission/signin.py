"""The failed console sign-in throttle, per client IP and per account (e-mail): sliding windows in
admission's counters, so with Redis every replica shares them (the failed-auth throttle's mechanism,
clientguard.py). A sign-in is refused (429, Retry-After) while either window is full, before the
password is even checked; only failures are counted."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from limits import RateLimitItemPerSecond

from proxy.admission.quotas import NAMESPACE, Window, fmt_duration
from proxy.core.errors import GatewayError
from proxy.observability import metrics as m

if TYPE_CHECKING:
    from proxy.admission.counters import Counters


class SigninThrottle:
    def __init__(self, counters: Counters, *, per_ip: int, per_account: int, window: float,
                 recorder: m.Recorder | None = None) -> None:
        self.counters = counters
        self.per_ip = per_ip
        self.per_account = per_account
        self.window_s = max(1, int(window))
        self.rec = recorder or m.Recorder()
        self._windows: dict[tuple[str, str], Window] = {}

    def _window(self, scope: str, who: str) -> Window | None:
        limit = self.per_ip if scope == "ip" else self.per_account
        if not limit:
            return None
        w = self._windows.get((scope, who))
        if w is None:
            if len(self._windows) >= 100_000:
                self._windows.clear()
            item = RateLimitItemPerSecond(limit, self.window_s, namespace=NAMESPACE)
            w = self._windows[(scope, who)] = Window.make(item, ("signin", scope, who, "-", "failed"), "requests",
                                                          "failed_signin", "ip" if scope == "ip" else "key", who)
        return w

    def _windows_for(self, ip: str, account: str | None) -> list[Window]:
        found = [self._window("ip", ip)]
        if account:
            found.append(self._window("account", account.strip().lower()))
        return [w for w in found if w is not None]

    async def check(self, ip: str, account: str | None) -> None:
        """429 while this IP or this account has used up its failed sign-ins."""
        for w in self._windows_for(ip, account):
            remaining, reset_in = await self.counters.window_stats(w)
            if remaining <= 0:
                if self.rec.enabled:
                    m.RATE_LIMITED.labels("signin_failed", "", "").inc()
                who = f"client IP {ip}" if w.scope == "ip" else "this account"
                raise GatewayError(
                    429, f"Too many failed sign-ins from {who}: Limit {w.limit} per {fmt_duration(w.expiry)}. "
                    f"Please try again in {fmt_duration(reset_in)}.", "requests", code="rate_limit_exceeded",
                    headers={"Retry-After": str(max(1, math.ceil(reset_in)))})

    async def failed(self, ip: str, account: str | None) -> None:
        windows = self._windows_for(ip, account)
        if windows:
            try:
                await self.counters.acquire(windows, [1] * len(windows), [], 0.0)
            except GatewayError:  # Redis down with fail_closed: the caller's 401 stands
                return
