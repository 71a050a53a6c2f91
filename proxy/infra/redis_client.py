"""The one shared Redis connection (redis.asyncio) with health tracking and the fail-open/closed policy.

Every stage that talks to Redis (limits, budgets, key-cache invalidation, the response cache, breaker
sync) goes through the one client the composition root builds, so a gateway holds a single connection
pool and a single notion of "Redis is down":

* a broken pooled connection is not an outage: when a command fails with a connection error (Redis
  restarted, an idle connection dropped by a proxy), redis-py reconnects and sends it once more at once
  (`retry=Retry(NoBackoff(), 1)` on ConnectionError only). A timeout is not retried: the command may have
  run, and a second wait would double the stall;
* when that retry fails too, Redis is down: `gateway_backend_errors{backend="redis"}` counts it,
  `gateway_backend_up{backend="redis"}` drops to 0, `redis_down` is logged once, and the failure mode
  applies: `fail_open` serves without the Redis feature, `fail_closed` answers 503;
* while down after a refused or reset connection (Redis restarting or crashed: failing is instant),
  requests keep trying it, so the first request after Redis is back is counted exactly again; while down
  after a timeout (host or network gone), requests skip it without trying, so none waits for a connect
  timeout;
* a background probe PINGs until Redis answers; the first success (probe or request) marks it up, logs
  `redis_recovered` and runs the `on_recover` callbacks (e.g. drop caches whose invalidation messages may
  have been missed): recovery needs no restart.

The retry cannot count an admission twice for a stale connection: the server that closed it never saw
the command. A command that reached a live server and lost only its reply to a broken connection could
run twice — one request charged twice, stricter never looser — which needs the connection cut between
the server's execution and its reply (a proxy in between resetting it), not a restart.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, TypeVar

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

from proxy.core.errors import UNAVAILABLE, GatewayError
from proxy.infra.asyncutil import Background, cancel_and_wait
from proxy.observability import metrics as m
from proxy.observability.logs import get_logger

if TYPE_CHECKING:  # annotations only: the config layer sits above this one
    from proxy.config import RedisConfig

T = TypeVar("T")
# what a broken or absent Redis raises through redis-py (OSError: refused / reset sockets)
REDIS_ERRORS: tuple[type[BaseException], ...] = (RedisError, OSError, TimeoutError)
# failures that took a timeout to notice: while they last, requests do not try Redis at all
SLOW_ERRORS: tuple[type[BaseException], ...] = (RedisTimeoutError, TimeoutError)

log = get_logger("gateway.redis")


class RedisClient:
    """A redis.asyncio client plus up/down state; a Gateway service (start/close)."""

    def __init__(self, cfg: RedisConfig, *, probe_interval: float = 0.5, connect_timeout: float = 1.0,
                 op_timeout: float = 2.0, max_connections: int = 512) -> None:
        self.url = cfg.url
        self.failure_mode = cfg.failure_mode
        self.probe_interval = probe_interval
        # one immediate retry on a fresh connection for connection errors only (see the module docstring)
        self.client: aioredis.Redis = aioredis.Redis.from_url(
            cfg.url, socket_connect_timeout=connect_timeout, socket_timeout=op_timeout,
            retry=Retry(NoBackoff(), 1, supported_errors=(RedisConnectionError,)), retry_on_error=[],
            max_connections=max_connections, decode_responses=False,
        )
        self.up = True  # optimistic: the first real failure flips it
        self.skip = False  # down after a timeout: requests take the failure mode without trying Redis
        self.down_since: float | None = None
        self.on_recover: list[Callable[[], Any]] = []
        self._probe: asyncio.Task[None] | None = None
        self._tasks = Background()
        self._closed = False

    @property
    def fail_closed(self) -> bool:
        return self.failure_mode == "fail_closed"

    # ------------------------------------------------------------ lifecycle
    async def start(self) -> None:
        self._closed = False
        try:
            await self.client.ping()
        except REDIS_ERRORS as err:
            # the gateway still starts: fail_open serves, fail_closed answers 503 until Redis is back
            self.failed("ping", err)
        else:
            m.BACKEND_UP.labels("redis").set(1)

    async def close(self) -> None:
        self._closed = True
        await cancel_and_wait(self._probe)
        await self._tasks.cancel()
        self._probe = None
        with contextlib.suppress(*REDIS_ERRORS):
            await self.client.aclose()

    async def check(self) -> str | None:
        """Readiness: only fail_closed makes a missing Redis a reason to take the replica out."""
        if not self.up and self.fail_closed:
            return "redis: unreachable (failure_mode fail_closed)"
        return None

    # ------------------------------------------------------------ failures
    def failed(self, op: str, err: BaseException, count: bool = True) -> None:
        if count:  # False: the caller counts each request it serves without Redis instead
            m.BACKEND_ERRORS.labels("redis", op).inc()
        self.skip = isinstance(err, SLOW_ERRORS)
        if self.up:
            self.up = False
            self.down_since = time.monotonic()
            m.BACKEND_UP.labels("redis").set(0)
            log.error("redis_down", op=op, error=f"{type(err).__name__}: {err}", failure_mode=self.failure_mode,
                      requests_try_redis=not self.skip)
        if not self._closed and (self._probe is None or self._probe.done()):
            self._probe = asyncio.get_running_loop().create_task(self._probe_until_up(), name="redis-probe")

    def recovered(self) -> None:
        """Redis answered while it was down (the probe, or a request that tried it): up again."""
        if self.up:
            return
        self.up, self.skip = True, False
        m.BACKEND_UP.labels("redis").set(1)
        down = time.monotonic() - (self.down_since or time.monotonic())
        log.warning("redis_recovered", down_s=round(down, 2))
        for cb in list(self.on_recover):
            try:
                res = cb()
                if asyncio.iscoroutine(res):
                    self.spawn(res, name="redis-on-recover")
            except Exception:  # a bad callback must not stop the others
                log.exception("redis_recover_callback_failed")

    def unavailable(self) -> GatewayError:
        return GatewayError(503, "The gateway's rate-limit store is unavailable; try again shortly.",
                            UNAVAILABLE, code="backend_unavailable", headers={"Retry-After": "1"})

    async def _probe_until_up(self) -> None:
        while not self._closed and not self.up:
            await asyncio.sleep(self.probe_interval)
            try:
                await self.client.ping()
            except REDIS_ERRORS:
                continue
            self.recovered()

    # ------------------------------------------------------------ operations
    async def call(self, op: str, fn: Callable[[], Awaitable[T]], default: T) -> T:
        """Run `fn` against Redis under the failure policy.

        Down or failing: fail_open returns `default` (the caller serves without the feature),
        fail_closed raises a 503 GatewayError."""
        if self.skip:
            m.BACKEND_ERRORS.labels("redis", op).inc()  # each request served (or refused) without Redis
            if self.fail_closed:
                raise self.unavailable()
            return default
        try:
            res = await fn()
        except REDIS_ERRORS as err:
            self.failed(op, err)
            if self.fail_closed:
                raise self.unavailable() from None
            return default
        if not self.up:
            self.recovered()
        return res

    async def quietly(self, op: str, fn: Callable[[], Awaitable[T]], default: T) -> T:
        """Background work (settling, publishing): never raises, whatever the failure mode."""
        if self.skip:
            return default
        try:
            res = await fn()
        except REDIS_ERRORS as err:
            self.failed(op, err)
            return default
        if not self.up:
            self.recovered()
        return res

    def spawn(self, coro: Awaitable[Any], name: str = "redis-bg") -> None:
        """Fire-and-forget with a strong reference (asyncio only keeps weak ones) and drain on close."""
        self._tasks.spawn(coro)

    async def publish(self, channel: str, message: str) -> None:
        await self.quietly("publish", lambda: self.client.publish(channel, message), 0)

    def subscribe(self, channel: str, handler: Callable[[bytes], Any],
                  on_connect: Callable[[], Any] | None = None) -> None:
        """Listen on `channel` in the background, reconnecting forever. `on_connect` runs after every
        (re)subscription: messages sent while we were not listening are lost, so callers resync there."""
        self._tasks.spawn(self._listen(channel, handler, on_connect), name=f"redis-sub-{channel}")

    async def _listen(self, channel: str, handler: Callable[[bytes], Any],
                      on_connect: Callable[[], Any] | None) -> None:
        # redis-py resubscribes a pub/sub connection that broke by itself (its one retry): every
        # subscription confirmation after the first means "reconnected, messages may have been lost"
        subscribed = False
        while not self._closed:
            pubsub = self.client.pubsub()
            try:
                await pubsub.subscribe(channel)
                while not self._closed:
                    msg = await pubsub.get_message(timeout=1.0)
                    if msg is None:
                        continue
                    if msg.get("type") == "message":
                        try:
                            handler(msg["data"])
                        except Exception:
                            log.exception("redis_message_handler_failed", channel=channel)
                    elif msg.get("type") == "subscribe":
                        if not self.up:
                            self.recovered()
                        if subscribed and on_connect is not None:
                            on_connect()
                        subscribed = True
            except REDIS_ERRORS as err:
                if self.up:  # count the transition, not every reconnect attempt while down
                    self.failed("subscribe", err)
                await asyncio.sleep(self.probe_interval)
            finally:
                with contextlib.suppress(*REDIS_ERRORS, RuntimeError):
                    await pubsub.aclose()
