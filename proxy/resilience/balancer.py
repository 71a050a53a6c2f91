"""Per-deployment live state and the per-alias plans that choose between deployments.

Everything a request needs to choose a deployment is precomputed at startup (`AliasPlan`, one per
alias; `Slot`, one per route entry with its call options and breaker). Per request the strategy only
returns a start index into the plan's slots; retries walk on from there. No per-request allocation.
"""

from __future__ import annotations

import bisect
import random
import time
from typing import TYPE_CHECKING, Any

from proxy.providers.base import CallOptions
from proxy.resilience.breakers import Breaker

if TYPE_CHECKING:
    from proxy.config import ModelAlias
    from proxy.core.errors import UpstreamError
    from proxy.providers.base import Provider

RING = 128  # latency samples kept per deployment (p95 of the recent ones)
P95_WINDOW = 60.0  # seconds: older samples do not count
P95_MIN_SAMPLES = 5
P95_REFRESH = 0.5  # seconds between p95 recomputations (a rule may ask on every request)
EWMA_ALPHA = 0.3
EWMA_STALE = 60.0  # an estimate older than this is forgotten, so a once-slow deployment is re-tried

PRIORITY, WEIGHTED, LEAST_BUSY, LATENCY = 0, 1, 2, 3
STRATEGIES = {"priority": PRIORITY, "weighted": WEIGHTED, "least-busy": LEAST_BUSY, "latency": LATENCY}


class DeploymentState:
    """What the gateway knows about one (provider, model): load, latency, capacity use, last error."""

    __slots__ = ("_i", "_lat", "_lat_at", "_n", "_p95", "_p95_at", "_p95_n", "_prev_req", "_prev_tok", "_req", "_tok",
                 "_win", "breaker", "ewma", "ewma_at", "failures", "in_flight", "last_error", "model",
                 "provider", "requests")

    def __init__(self, provider: str, model: str, breaker: Breaker) -> None:
        self.provider, self.model, self.breaker = provider, model, breaker
        self.in_flight = 0
        self.ewma = 0.0  # seconds to first byte (non-stream: whole answer); 0 = unknown
        self.ewma_at = 0.0
        self._lat = [0.0] * RING
        self._lat_at = [0.0] * RING
        self._i = 0
        self._n = 0  # samples observed so far
        self._p95: float | None = None
        self._p95_at = -1e9
        self._p95_n = -1
        self._win = 0
        self._req = self._tok = self._prev_req = self._prev_tok = 0
        self.requests = 0
        self.failures = 0
        self.last_error: dict[str, Any] | None = None

    # --- latency
    def observe(self, seconds: float, now: float) -> None:
        if self.ewma and now - self.ewma_at < EWMA_STALE:
            self.ewma += EWMA_ALPHA * (seconds - self.ewma)
        else:
            self.ewma = seconds
        self.ewma_at = now
        i = self._i
        self._lat[i], self._lat_at[i] = seconds, now
        self._i = (i + 1) % RING
        self._n += 1

    def latency_estimate(self, now: float) -> float:
        """EWMA latency, 0 when unknown or stale (so unknown deployments get explored first)."""
        return self.ewma if now - self.ewma_at < EWMA_STALE else 0.0

    def p95(self, now: float) -> float | None:
        """p95 latency (seconds) of the last minute, None with fewer than 5 samples."""
        # cached for P95_REFRESH; while there were too few samples, every new sample may change that
        if now - self._p95_at < P95_REFRESH and (self._p95 is not None or self._p95_n == self._n):
            return self._p95
        recent = sorted(v for v, t in zip(self._lat, self._lat_at, strict=True) if t and now - t <= P95_WINDOW)
        n = len(recent)
        self._p95 = recent[max(0, -(-95 * n // 100) - 1)] if n >= P95_MIN_SAMPLES else None
        self._p95_at, self._p95_n = now, self._n
        return self._p95

    # --- rpm / tpm capacity (sliding minute approximated from this and the previous minute bucket)
    def _roll(self, now: float) -> float:
        win = int(now // 60)
        if win != self._win:
            if win == self._win + 1:
                self._prev_req, self._prev_tok = self._req, self._tok
            else:
                self._prev_req = self._prev_tok = 0
            self._win, self._req, self._tok = win, 0, 0
        return 1.0 - (now % 60) / 60  # weight of the previous bucket still inside the window

    def has_capacity(self, rpm: int | None, tpm: int | None, tokens: int, now: float) -> bool:
        prev = self._roll(now)
        if rpm is not None and self._prev_req * prev + self._req + 1 > rpm:
            return False
        return not (tpm is not None and self._prev_tok * prev + self._tok + tokens > tpm)

    def count(self, tokens: int, now: float) -> None:
        self._roll(now)
        self._req += 1
        self._tok += tokens

    def add_tokens(self, tokens: int) -> None:
        self._tok += tokens

    # --- errors
    def note_error(self, err: UpstreamError, message: str) -> None:
        self.failures += 1
        self.last_error = {"type": err.kind, "status": err.upstream_status or err.status, "message": message,
                           "at": time.time()}

    def snapshot(self, now: float) -> dict[str, Any]:
        p95 = self.p95(now)
        est = self.latency_estimate(now)
        out: dict[str, Any] = {
            "model": self.model,
            "breaker": self.breaker.snapshot(),
            "in_flight": self.in_flight,
            "latency_ewma_ms": round(est * 1000, 2) if est else None,
            "latency_p95_ms": round(p95 * 1000, 2) if p95 is not None else None,
            "requests": self.requests,
            "failures": self.failures,
            "last_error": self.last_error,
        }
        return out


class Slot:
    """One route entry of one alias: where to send, with which options, under which limits."""

    __slots__ = ("breaker", "client", "limited", "model", "opts", "provider", "rpm", "self_timed", "state",
                 "tpm", "weight")

    def __init__(self, provider: str, model: str, weight: float, rpm: int | None, tpm: int | None,
                 state: DeploymentState, opts: CallOptions) -> None:
        self.provider, self.model, self.weight = provider, model, weight
        self.rpm, self.tpm = rpm, tpm
        self.limited = rpm is not None or tpm is not None
        self.state, self.breaker = state, state.breaker
        self.opts = opts
        self.client: Provider | None = None  # bound by the Executor
        # HTTP providers enforce CallOptions.total themselves (aiohttp ClientTimeout), so the executor
        # can skip its own asyncio.timeout (~5 us per request) for them
        self.self_timed = False

    def traced(self, traceparent: str) -> CallOptions:
        o = self.opts
        return CallOptions(o.connect_timeout, o.first_token_timeout, o.idle_timeout, o.total_timeout,
                           {"traceparent": traceparent})


class AliasPlan:
    """Everything about one alias the request path needs, resolved once at startup."""

    __slots__ = ("_cum", "_rr", "_total", "attempts", "backoff", "backoff_max", "cfg", "content_fallbacks",
                 "context_fallbacks", "deadline", "fallbacks", "name", "retry_after_max", "slots",
                 "strategy")

    def __init__(self, name: str, cfg: ModelAlias, slots: list[Slot], deadline: float) -> None:
        self.name, self.cfg = name, cfg
        self.slots = tuple(slots)
        self.strategy = STRATEGIES[cfg.strategy] if len(slots) > 1 else PRIORITY
        r = cfg.retry
        self.attempts = r.attempts
        self.backoff, self.backoff_max, self.retry_after_max = r.backoff, r.backoff_max, r.retry_after_max
        self.deadline = deadline
        self.fallbacks = tuple(cfg.fallbacks)
        self.context_fallbacks = tuple(cfg.context_window_fallbacks)
        self.content_fallbacks = tuple(cfg.content_policy_fallbacks)
        cum, total = [], 0.0
        for s in slots:
            total += s.weight
            cum.append(total)
        self._cum, self._total = cum, total
        self._rr = 0

    def start(self, now: float) -> int:
        """Index of the slot to try first; later attempts walk on from it."""
        strategy = self.strategy
        if strategy == PRIORITY:
            return 0
        slots = self.slots
        if strategy == WEIGHTED:
            return min(bisect.bisect_right(self._cum, random.random() * self._total), len(slots) - 1)
        # least-busy / latency: scan from a rotating offset so ties do not all land on the first slot
        n = len(slots)
        off = self._rr = (self._rr + 1) % n
        best, best_v = off, float("inf")
        for k in range(n):
            i = (off + k) % n
            st = slots[i].state
            v = st.in_flight if strategy == LEAST_BUSY else st.latency_estimate(now)
            if v < best_v:
                best, best_v = i, v
        return best

    def p95(self, now: float) -> float | None:
        """The alias's recent p95: its best deployment that has enough samples and is not open."""
        best: float | None = None
        for s in self.slots:
            if s.breaker.state == "open":
                continue
            p = s.state.p95(now)
            if p is not None and (best is None or p < best):
                best = p
        return best
