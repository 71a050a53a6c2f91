"""Circuit breakers, one per deployment (provider + upstream model), on pybreaker's state machine.

pybreaker's `CircuitBreaker.call()` is synchronous and wraps the guarded call itself, so it cannot
wrap an `await`. We keep pybreaker for what it is good at — the closed -> open -> half-open ->
closed transitions, failure counting, listeners — and drive it in two steps:

* `allow()` before an attempt: a plain read of the local state (closed: yes; open: only once the
  reset timeout elapsed, which moves the breaker to half-open and hands out the single probe);
* `record_success()` / `record_failure()` after it: the outcome is *replayed* through
  `CircuitBreaker.call()` with a tiny sync function that returns or raises, so pybreaker applies its
  own rules. Nothing in here does I/O: the request path never waits on Redis or a lock held across
  an await (pybreaker's RLock is only taken for a few synchronous lines).

Sharing across replicas is `sync.py`: our storage keeps every value in memory and marks what
changed; a background task mirrors that to Redis and adopts what other replicas published.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

import pybreaker

from proxy.core.errors import UpstreamError
from proxy.observability import metrics as m
from proxy.observability.logs import get_logger
from proxy.providers.settings import BreakerConfig

CLOSED, OPEN, HALF_OPEN = pybreaker.STATE_CLOSED, pybreaker.STATE_OPEN, pybreaker.STATE_HALF_OPEN
STATE_CODE = {CLOSED: 0, OPEN: 1, HALF_OPEN: 2}
# a half-open probe that never reports back (lost task) frees its slot after this long
PROBE_TIMEOUT = 60.0

log = get_logger("gateway.breaker")
TransitionHook = Callable[[str, str, str, dict[str, Any]], None]


class LocalStorage(pybreaker.CircuitBreakerStorage):
    """pybreaker storage held in memory, recording what changed for the Redis mirror.

    `dirty` is set when this replica moved the breaker to open or closed (half-open stays local: each
    replica sends its own probe); `pending_failures` / `reset_pending` carry counter changes."""

    def __init__(self) -> None:
        super().__init__("gateway")
        self._state: str = CLOSED
        self._failures = 0
        self._successes = 0
        self.opened_ts = 0.0  # epoch seconds
        self.changed_at = 0.0  # epoch seconds of the last transition (last writer wins across replicas)
        self.dirty = False
        self.pending_failures = 0
        self.reset_pending = False
        self.on_change: Callable[[], None] | None = None  # wakes the Redis mirror

    # --- pybreaker interface
    @property
    def state(self) -> str:
        return self._state

    @state.setter
    def state(self, state: str) -> None:
        if state == self._state:
            return
        self._state = state
        self.changed_at = time.time()
        if state != HALF_OPEN:
            self.dirty = True
            if self.on_change is not None:
                self.on_change()

    def increment_counter(self) -> None:
        self._failures += 1
        self.pending_failures += 1

    def reset_counter(self) -> None:
        if self._failures or self.pending_failures:
            self.reset_pending = True
        self._failures = 0
        self.pending_failures = 0

    def increment_success_counter(self) -> None:
        self._successes += 1

    def reset_success_counter(self) -> None:
        self._successes = 0

    @property
    def counter(self) -> int:
        return self._failures

    @property
    def success_counter(self) -> int:
        return self._successes

    @property
    def opened_at(self) -> datetime | None:
        return datetime.fromtimestamp(self.opened_ts, UTC) if self.opened_ts else None

    @opened_at.setter
    def opened_at(self, value: datetime) -> None:
        self.opened_ts = value.timestamp()

    # --- the Redis mirror
    def adopt(self, state: str, opened_ts: float, changed_at: float) -> None:
        """Take a transition another replica published (not marked dirty: it is not ours to publish)."""
        self._state, self.opened_ts, self.changed_at = state, opened_ts, changed_at
        if state == CLOSED:
            self._failures = self.pending_failures = 0


class _Failed(Exception):
    """What the replayed call raises so pybreaker counts a failure."""


def _replay(failed: bool) -> None:
    if failed:
        raise _Failed


class _Listener(pybreaker.CircuitBreakerListener):
    def __init__(self, breaker: Breaker) -> None:
        self.breaker = breaker

    def state_change(self, cb: pybreaker.CircuitBreaker, old_state: Any, new_state: Any) -> None:
        b = self.breaker
        name = new_state.name
        if b.metrics:
            m.BREAKER_STATE.labels(b.provider, b.model).set(STATE_CODE[name])
        if name == OPEN:
            log.warning("breaker_open", provider=b.provider, model=b.model, last_error=b.last_error_kind,
                        reset_timeout_s=b.reset_timeout)
        else:
            log.info("breaker_" + name.replace("-", "_"), provider=b.provider, model=b.model)
        # transitions adopted from another replica were reported there; a failed half-open probe re-opening
        # the breaker is not news
        old = getattr(old_state, "name", None)
        if b.on_transition is not None and not b.adopting and (name == CLOSED or (name == OPEN and old == CLOSED)):
            b.on_transition(b.provider, b.model, name, {"last_error": b.last_error_kind,
                                                        "reset_timeout_s": b.reset_timeout})


class Breaker:
    """The breaker of one deployment, as routing and the executor use it."""

    __slots__ = ("_probe_until", "adopting", "cb", "last_error_kind", "metrics", "model", "name", "on_transition",
                 "provider", "reset_timeout", "storage")

    def __init__(self, provider: str, model: str, cfg: BreakerConfig, metrics: bool = True) -> None:
        self.provider, self.model = provider, model
        self.name = f"{provider}/{model}"
        self.reset_timeout = float(cfg.reset_timeout)
        self.metrics = metrics
        self.last_error_kind: str | None = None
        self._probe_until = 0.0
        # (provider, model, "open" | "closed", details): told of this replica's own transitions (webhooks)
        self.on_transition: TransitionHook | None = None
        self.adopting = False
        self.storage = LocalStorage()
        self.cb = pybreaker.CircuitBreaker(fail_max=cfg.failure_threshold, reset_timeout=cfg.reset_timeout,
                                           state_storage=self.storage, listeners=[_Listener(self)],
                                           name=self.name)
        if metrics:
            m.BREAKER_STATE.labels(provider, model).set(0)

    @property
    def state(self) -> str:
        return self.storage._state

    @property
    def failures(self) -> int:
        return self.storage._failures

    def allow(self) -> bool:
        """May an attempt go to this deployment now? Hands out the half-open probe when it is due."""
        state = self.storage._state
        if state == CLOSED:
            return True
        now = time.time()
        if state == OPEN:
            if now < self.storage.opened_ts + self.reset_timeout:
                return False
            self.cb.half_open()
        elif now < self._probe_until:
            return False  # half-open and the probe is still out
        self._probe_until = now + PROBE_TIMEOUT
        return True

    def retry_in(self) -> float:
        """Seconds until an open breaker lets a probe through (0 when it would now)."""
        if self.storage._state != OPEN:
            return 0.0
        return max(0.0, self.storage.opened_ts + self.reset_timeout - time.time())

    def record_success(self) -> None:
        s = self.storage
        if s._state == CLOSED and not s._failures:
            return  # the happy path: nothing would change
        self._probe_until = 0.0
        self._apply(False)

    def record_failure(self, err: UpstreamError) -> None:
        self.last_error_kind = err.kind
        self._probe_until = 0.0
        self._apply(True)

    def release(self) -> None:
        """The attempt was abandoned (client went away): free the half-open probe, count nothing."""
        self._probe_until = 0.0

    def _apply(self, failed: bool) -> None:
        try:
            self.cb.call(_replay, failed)
        except (_Failed, pybreaker.CircuitBreakerError):
            # CircuitBreakerError: the breaker tripped now, or it was already open and this result
            # belongs to a call that started before it opened (pybreaker then records nothing)
            pass

    def sync_state_object(self) -> None:
        """After `adopt()`: let pybreaker notice the new state (fires listeners: metric, log)."""
        self.adopting = True
        try:
            _ = self.cb.state
        finally:
            self.adopting = False

    def open_now(self) -> None:
        """Force open (tests, admin)."""
        self.cb.open()

    def snapshot(self) -> dict[str, Any]:
        s = self.storage
        out: dict[str, Any] = {"state": s._state, "failures": s._failures}
        if s._state != CLOSED and s.opened_ts:
            out["opened_at"] = datetime.fromtimestamp(s.opened_ts, UTC).isoformat()
            out["retry_in_s"] = round(self.retry_in(), 3)
        return out


class BreakerBoard:
    """Every deployment's breaker; one per (provider, model), shared by all aliases routing there."""

    def __init__(self, default: BreakerConfig, per_provider: dict[str, BreakerConfig | None],
                 metrics: bool = True) -> None:
        self.default = default
        self.per_provider = per_provider
        self.metrics = metrics
        self.breakers: dict[tuple[str, str], Breaker] = {}
        self.on_transition: TransitionHook | None = None

    def listen(self, hook: TransitionHook) -> None:
        """Tell `hook` of every open/closed transition this replica makes (the composition root wires it)."""
        self.on_transition = hook
        for b in self.breakers.values():
            b.on_transition = hook

    def get(self, provider: str, model: str) -> Breaker:
        b = self.breakers.get((provider, model))
        if b is None:
            cfg = self.per_provider.get(provider) or self.default
            b = self.breakers[(provider, model)] = Breaker(provider, model, cfg, self.metrics)
            b.on_transition = self.on_transition
        return b

    def __iter__(self) -> Iterator[Breaker]:
        return iter(self.breakers.values())
