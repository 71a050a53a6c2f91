"""The one shared Redis connection (redis.asyncio) with health tracking and the fail-open/closed policy.

Every stage that talks to Redis (limits, budgets, key-cache invalidation, the response cache...) goes
through the one client the composition root builds, so a gateway holds a single connection pool and a
single notion of "Redis is down":

* the first failed operation marks Redis down, counts `gateway_backend_errors{backend="redis"}` and logs
  once; while it is down, operations are not even tried (no per-request connect timeout), they take the
  configured failure mode at once: `fail_open` serves without the Redis feature, `fail_closed` answers 503;
* a background probe PINGs until Redis answers again, then marks it up and runs the `on_recover`
  callbacks (e.g. drop caches whose invalidation messages may have been missed): recovery needs no
  restart.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

from proxy.config import RedisConfig
from proxy.core.errors import UNAVAILABLE, GatewayError
from proxy.observability import metrics as m
from proxy.observability.logs import get_logger

T = TypeVar("T")
# what a broken or absent Redis raises through redis-py (OSError: refused / reset sockets)
REDIS_ERRORS: tuple[type[BaseException], ...] = (RedisError, OSError, TimeoutError)

log = get_logger("gateway.redis")


class RedisClient:
    """A redis.asyncio client plus up/down state; a Gateway service (start/close)."""

    def __init__(self, cfg: RedisConfig, *, probe_interval: float = 0.5, connect_timeout: float = 1.0,
                 op_timeout: float = 2.0, max_connections: int = 512) -> None:
        self.url = cfg.url
        self.failure_mode = cfg.failure_mode
        self.probe_interval = probe_interval
        # no redis-py retries: a failed call must fail fast so the failure mode decides, not a retry loop
        self.client: aioredis.Redis = aioredis.Redis.from_url(
            cfg.url, socket_connect_timeout=connect_timeout, socket_timeout=op_timeout,
            retry=Retry(NoBackoff(), 0), max_connections=max_connections, decode_responses=False,
        )
        self.up = True  # optimistic: the first real failure flips it
        self.down_since: float | None = None
        self.on_recover: list[Callable[[], Any]] = []
        self._probe: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
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

    async def close(self) -> None:
        self._closed = True
        tasks = [t for t in (self._probe, *self._tasks) if t is not None]
        for t in tasks:
            t.cancel()
        for t in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await t
        self._probe = None
        with contextlib.suppress(*REDIS_ERRORS):
            await self.client.aclose()

    async def check(self) -> str | None:
        """Readiness: only fail_closed makes a missing Redis a reason to take the replica out."""
        if not self.up and self.fail_closed:
            return "redis: unreachable (failure_mode fail_closed)"
        return None

    # ------------------------------------------------------------ failures
    def failed(self, op: str, err: BaseException) -> None:
        m.BACKEND_ERRORS.labels("redis", op).inc()
        if self.up:
            self.up = False
            self.down_since = time.monotonic()
            log.error("redis_down", op=op, error=f"{type(err).__name__}: {err}", failure_mode=self.failure_mode)
        if not self._closed and (self._probe is None or self._probe.done()):
            self._probe = asyncio.get_running_loop().create_task(self._probe_until_up(), name="redis-probe")

    def unavailable(self) -> GatewayError:
        return GatewayError(503, "The gateway's rate-limit store is unavailable; try again shortly.",
                            UNAVAILABLE, code="backend_unavailable", headers={"Retry-After": "1"})

    async def _probe_until_up(self) -> None:
        while not self._closed:
            await asyncio.sleep(self.probe_interval)
            try:
                await self.client.ping()
            except REDIS_ERRORS:
                continue
            self.up = True
            down = time.monotonic() - (self.down_since or time.monotonic())
            log.warning("redis_recovered", down_s=round(down, 2))
            for cb in list(self.on_recover):
                try:
                    res = cb()
                    if asyncio.iscoroutine(res):
                        await res
                except Exception:  # a bad callback must not stop the others
                    log.exception("redis_recover_callback_failed")
            return

    # ------------------------------------------------------------ operations
    async def call(self, op: str, fn: Callable[[], Awaitable[T]], default: T) -> T:
        """Run `fn` against Redis under the failure policy.

        Down or failing: fail_open returns `default` (the caller serves without the feature),
        fail_closed raises a 503 GatewayError."""
        if not self.up:
            m.BACKEND_ERRORS.labels("redis", op).inc()  # each request served (or refused) without Redis
            if self.fail_closed:
                raise self.unavailable()
            return default
        try:
            return await fn()
        except REDIS_ERRORS as err:
            self.failed(op, err)
            if self.fail_closed:
                raise self.unavailable() from None
            return default

    async def quietly(self, op: str, fn: Callable[[], Awaitable[T]], default: T) -> T:
        """Background work (settling, publishing): never raises, whatever the failure mode."""
        if not self.up:
            return default
        try:
            return await fn()
        except REDIS_ERRORS as err:
            self.failed(op, err)
            return default

    def spawn(self, coro: Awaitable[Any], name: str = "redis-bg") -> None:
        """Fire-and-forget with a strong reference (asyncio only keeps weak ones) and drain on close."""
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def publish(self, channel: str, message: str) -> None:
        await self.quietly("publish", lambda: self.client.publish(channel, message), 0)

    def subscribe(self, channel: str, handler: Callable[[bytes], Any],
                  on_connect: Callable[[], Any] | None = None) -> None:
        """Listen on `channel` in the background, reconnecting forever. `on_connect` runs after every
        (re)subscription: messages sent while we were not listening are lost, so callers resync there."""
        task = asyncio.get_running_loop().create_task(self._listen(channel, handler, on_connect),
                                                      name=f"redis-sub-{channel}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _listen(self, channel: str, handler: Callable[[bytes], Any],
                      on_connect: Callable[[], Any] | None) -> None:
        first = True
        while not self._closed:
            pubsub = self.client.pubsub(ignore_subscribe_messages=True)
            try:
                await pubsub.subscribe(channel)
                if on_connect is not None and not first:
                    on_connect()
                first = False
                while not self._closed:
                    msg = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1.0)
                    if msg is not None and msg.get("type") == "message":
                        try:
                            handler(msg["data"])
                        except Exception:
                            log.exception("redis_message_handler_failed", channel=channel)
            except REDIS_ERRORS as err:
                if self.up:  # count the transition, not every reconnect attempt while down
                    self.failed("subscribe", err)
                first = False  # whatever was published meanwhile is lost: resync on reconnect
                await asyncio.sleep(self.probe_interval)
            finally:
                with contextlib.suppress(*REDIS_ERRORS, RuntimeError):
                    await pubsub.aclose()
