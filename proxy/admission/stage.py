"""Stage 2: admission — rate limits (quotas.py) and budgets (budgets.py) checked together, settled after.

`admit(ctx)` runs after auth for every call: keys with no limits, no budget, no team and no user return at
once (a user's limits and budget count per user, across all of that user's keys). Otherwise it checks every
window and budget of the call in one all-or-nothing step — in-process, or one Lua call on Redis — adds
OpenAI's x-ratelimit-* headers to the response, and raises 429 (rate_limit_exceeded / insufficient_quota)
when something is full. The `on_finish` hook settles the call off the request path: token windows get the
reported usage instead of the estimate, budgets get the real cost instead of the reservation.
"""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime
from functools import partial
from typing import TYPE_CHECKING, Any

from proxy.admission.budgets import (
    BudgetLine,
    EventBus,
    PeriodClock,
    alert_event,
    crossed,
    exceeded_event,
    over_budget,
)
from proxy.admission.counters import Counters, LocalCounters, Outcome
from proxy.admission.plan import Plan, Prices, Ticket
from proxy.admission.quotas import QuotaPlanner, Window, all_windows, ip_window, rate_headers, rate_limited
from proxy.admission.redis_counters import RedisCounters
from proxy.config import GatewayConfig
from proxy.config.base import Budget
from proxy.core.tokens import completion_budget, prompt_tokens
from proxy.infra.asyncutil import Background, SingleFlight, cancel_and_wait
from proxy.infra.memo import Memo
from proxy.observability import metrics as m
from proxy.observability.logs import get_logger

if TYPE_CHECKING:
    from proxy.core.context import RequestContext
    from proxy.core.identity import KeyInfo
    from proxy.ledger import LedgerStore

log = get_logger("gateway.admission")
ZERO_COST = "0.00000000"


class AdmissionStage:
    def __init__(self, cfg: GatewayConfig, prices: Prices, counters: Counters, *,
                 store: LedgerStore | None = None, events: EventBus | None = None,
                 recorder: m.Recorder | None = None, sweep_interval: float = 10.0) -> None:
        self.cfg = cfg
        self.prices = prices
        self.counters = counters
        counters.on_spend = self._spent
        self._local = counters if isinstance(counters, LocalCounters) else None
        self._redis = counters if isinstance(counters, RedisCounters) else None
        self.store = store
        self.events = events or EventBus()
        self.rec = recorder or m.Recorder()
        self.planner = QuotaPlanner(cfg.teams)
        self.clock = PeriodClock(cfg.budgets.timezone)
        self.team_budgets = {name: t.budget for name, t in cfg.teams.items() if t.budget is not None}
        self.ip_rpm = cfg.ip_limits.rpm
        self.sweep_interval = sweep_interval
        self._primary: dict[str, tuple[str, str]] = {}
        self._plans: Memo[tuple[str, str], Plan] = Memo(100_000)
        self._ip_windows: Memo[str, Window] = Memo(100_000)
        self._seeded: set[str] = set()
        self._seeding: SingleFlight[None] = SingleFlight(cancel_orphans=False)  # a status answer may wait
        self._started = datetime.now(UTC)  # in-process counting starts here: the ledger before it seeds
        self._tasks = Background()  # seeds and alerts: waited for (briefly) on close
        self._spend_now: dict[tuple[str, str], tuple[float, float]] = {}
        self._gauge_lines: dict[tuple[str, str], BudgetLine] = {}  # current lines, for the spend gauges
        self._sweeper: asyncio.Task[None] | None = None

    # ------------------------------------------------------------ lifecycle (a Gateway service)
    async def start(self) -> None:
        self._sweeper = asyncio.get_running_loop().create_task(self._sweep(), name="admission-sweep")
        # budgets known from gateway.yaml start loading their history now, before the first call
        for k in self.cfg.keys:
            if k.budget is not None:
                self._seed([BudgetLine("key", f"cfg:{k.name}", k.name, k.budget, self.clock.current(k.budget.period))])
        for team, b in self.team_budgets.items():
            self._seed([BudgetLine("team", team, team, b, self.clock.current(b.period))])
        for u in self.cfg.users:
            if u.budget is not None and u.id:
                self._seed([BudgetLine("user", u.id, u.email, u.budget, self.clock.current(u.budget.period))])

    async def close(self) -> None:
        await cancel_and_wait(self._sweeper)
        await self.counters.drain()  # settle what finished calls still owe before Redis closes
        await self._tasks.wait(5)
        self._publish_gauges()

    async def _sweep(self) -> None:
        ticks = 0
        while True:
            await asyncio.sleep(1.0)
            self._publish_gauges()
            ticks += 1
            if ticks % max(1, int(self.sweep_interval)) == 0:
                self.counters.sweep()

    # ------------------------------------------------------------ request path
    def primary(self, alias: str) -> tuple[str, str]:
        """(provider, model) the alias will most likely be served by: its first enabled deployment."""
        found = self._primary.get(alias)
        if found is None:
            m_alias = self.cfg.models.get(alias)
            route = [d for d in (m_alias.route if m_alias else [])
                     if d.provider in self.cfg.providers and self.cfg.providers[d.provider].enabled]
            found = (route[0].provider, route[0].model) if route else ("", "")
            self._primary[alias] = found
        return found

    def plan(self, key: KeyInfo, alias: str) -> Plan:
        ck = (key.id, alias)
        p = self._plans.get(ck)
        if (p is not None and p.limits is key.limits and p.budget is key.budget and p.team == key.team
                and p.user_limits is key.user_limits and p.user_budget is key.user_budget):
            return p
        provider, model = self.primary(alias)
        windows = self.planner.windows(key, alias, provider)
        budgets: list[tuple[str, str, str, Budget]] = []
        if key.budget is not None:
            budgets.append(("key", key.id, key.name, key.budget))
        if key.team and (tb := self.team_budgets.get(key.team)) is not None:
            budgets.append(("team", key.team, key.team, tb))
        if key.user_id and key.user_budget is not None:  # one spend counter per user, across their keys
            budgets.append(("user", key.user_id, key.user_label or key.user_id, key.user_budget))
        tokens = tuple(i for i, w in enumerate(windows) if w.kind == "tokens")
        p = Plan(key.limits, key.budget, key.team, key.user_limits, key.user_budget, windows, bool(tokens),
                 provider, self.prices.lookup(provider, model) if provider else None, tuple(budgets),
                 token_windows=tokens)
        return self._plans.put(ck, p)

    def lines(self, p: Plan) -> list[BudgetLine]:
        """The plan's budget lines in the current periods (rebuilt only when a period rolls over)."""
        if time.time() >= p.lines_until:
            current = self.clock.current
            p.lines = [BudgetLine(sc, bid, label, b, current(b.period)) for sc, bid, label, b in p.budgets]
            p.lines_until = min((ln.period.end_ts for ln in p.lines), default=float("inf"))
            if len(self._gauge_lines) > 10_000:
                self._gauge_lines.clear()
            for ln in p.lines:
                self._gauge_lines[(ln.scope, ln.label)] = ln
            p.seeded = False
        return p.lines

    async def admit(self, ctx: RequestContext) -> None:
        key = ctx.key
        if key is None:
            return
        if not ctx.stream:  # a stream's cost is unknown when its headers leave (ledger, /v1/usage have it)
            ctx.headers["x-gateway-cost-usd"] = ZERO_COST
        if key.limits is None and key.budget is None and not key.team and key.user_id is None:
            return  # the common unlimited key: no further work at all
        p = self.plan(key, ctx.alias)
        if not p.windows and not p.budgets:
            return
        lines = self.lines(p) if p.budgets else []
        tokens, estimate = 0, 0.0
        if lines or p.has_tokens:
            prompt, out = prompt_tokens(ctx), completion_budget(ctx.body)
            tokens = prompt + out
            if lines:
                if p.price is not None:
                    estimate = (prompt * p.price.input + out * p.price.output) / 1_000_000
                if not p.seeded:
                    self._seed(lines)
                    p.seeded = True
        windows = p.windows
        amounts = [1] * len(windows)
        for i in p.token_windows:
            amounts[i] = tokens
        if self._local is not None:
            if self._local.admit(windows, amounts, lines, estimate, ctx.headers):
                ctx.notes["admission"] = Ticket(key, p, amounts, lines, estimate)
                return
            outcome: Outcome | None = self._local.acquire_now(windows, amounts, lines, estimate)  # the details
        elif self._redis is not None:
            res = await self._redis.admit(windows, amounts, lines, estimate, ctx.headers)
            if res is True:
                ctx.notes["admission"] = Ticket(key, p, amounts, lines, estimate)
                return
            outcome = res or None
        else:
            outcome = await self.counters.acquire(windows, amounts, lines, estimate)
        if outcome is None:  # Redis down and fail_open: serve unlimited (counted in backend errors)
            return
        if windows:
            rate_headers(windows, outcome.stats, ctx.headers)
        if outcome.failed_window >= 0 or outcome.failed_budget >= 0:
            self._refuse(ctx, key, windows, amounts, lines, outcome)
        ctx.notes["admission"] = Ticket(key, p, amounts, lines, estimate)

    async def admit_estimate(self, key: KeyInfo, alias: str, estimate: float) -> None:
        """A request made of several calls (a chain): refuse it up front (429, naming the budget) when its whole
        estimated cost does not fit what is left of the key's, team's or user's budget. Each call is still
        admitted on its own as it runs."""
        if estimate <= 0 or (key.budget is None and not key.team and key.user_budget is None):
            return
        p = self.plan(key, alias)
        lines = self.lines(p) if p.budgets else []
        if lines and not p.seeded:
            self._seed(lines)
            p.seeded = True
        for line in lines:
            spend = await self.counters.spend(line)
            if spend + estimate > line.budget.usd:
                raise over_budget(line, spend)

    def _refuse(self, ctx: RequestContext, key: KeyInfo, windows: tuple[Window, ...], amounts: list[int],
                lines: list[BudgetLine], outcome: Outcome) -> None:
        team = key.team or ""
        if outcome.failed_window >= 0:
            w = windows[outcome.failed_window]
            if self.rec.enabled:
                m.RATE_LIMITED.labels(w.reason, self.rec.key(key.name), team).inc()
            raise rate_limited(w, outcome.stats[outcome.failed_window], amounts[outcome.failed_window],
                               ctx.headers)
        if outcome.failed_budget >= 0:
            line = lines[outcome.failed_budget]
            if self.rec.enabled:
                m.BUDGET_REJECTED.labels(line.scope, self.rec.key(key.name), team).inc()
            raise over_budget(line, outcome.spends[outcome.failed_budget])

    async def admit_ip(self, ctx: RequestContext) -> None:
        """Per-client-IP request rate, before auth (abuse by callers without a valid key)."""
        await self.admit_client_ip(ctx.client_ip)

    async def admit_client_ip(self, ip: str) -> None:
        """`ip_limits.rpm` for one request from `ip` (also the routes outside the pipeline: clientip.py)."""
        if not self.ip_rpm:
            return
        w = self._ip_windows.get(ip)
        if w is None:
            w = self._ip_windows.put(ip, ip_window(ip, self.ip_rpm))
        outcome = await self.counters.acquire((w,), [1], [], 0.0)
        if outcome is not None and outcome.failed_window == 0:
            if self.rec.enabled:
                m.RATE_LIMITED.labels(w.reason, "", "").inc()
            raise rate_limited(w, outcome.stats[0], 1, {})

    def _seed(self, lines: list[BudgetLine]) -> None:
        """Load a period's earlier spend from the ledger the first time this process meets it (restarts;
        Redis keys lost mid-period), in the background: a month of a busy key's rows can take a while to
        sum, and no request waits for that.

        In-process, the ledger is summed up to this process's start only — everything since is counted
        here — so adding the two never counts a call twice. With Redis, the sum goes in only when no
        replica has counted the period yet (SET NX)."""
        for line in lines:
            k = line.spend_key
            if k in self._seeded:
                continue
            self._seeded.add(k)
            task, _ = self._seeding.start(k, partial(self._seed_one, line))
            self._tasks.keep(task)

    async def _seed_one(self, line: BudgetLine) -> None:
        if self.store is None:
            return
        until = self._started if self._local is not None else None
        try:
            spent = await asyncio.wait_for(self.store.spend(line.scope, line.name, line.period.start, until), 60)
        except Exception as err:  # the ledger is an aid here; budgets still count from zero
            m.BACKEND_ERRORS.labels("db", "budget_seed").inc()
            log.warning("budget_seed_failed", scope=line.scope, name=line.label, error=f"{type(err).__name__}")
            return
        if spent > 0:
            await self.counters.seed(line, spent)

    # ------------------------------------------------------------ after the call
    def on_finish(self, ctx: RequestContext) -> None:
        """Meter hook: settle the call — in-process at once, with Redis queued for the next batch."""
        t: Ticket | None = ctx.notes.get("admission")
        if t is None:
            return
        p = t.plan
        moved = bool(ctx.provider) and ctx.provider != p.provider
        adj_w: list[Window] = []
        adj_a: list[int] = []
        if p.has_tokens or moved:
            u = ctx.usage
            actual = 0 if (u is None or ctx.cache_status == "hit") else u.total_tokens
            windows, amounts = p.windows, t.amounts
            for i in (range(len(windows)) if moved else p.token_windows):
                w = windows[i]
                final = 1 if w.kind == "requests" else actual
                if moved and w.sub == "provider":
                    final = 0  # charged to the provider that really served, below
                if final != amounts[i]:
                    adj_w.append(w)
                    adj_a.append(final - amounts[i])
            if moved:
                # a retry or fallback was served by another provider than admission assumed
                for w in self.planner.windows(t.key, ctx.alias, ctx.provider):
                    if w.sub == "provider":
                        adj_w.append(w)
                        adj_a.append(1 if w.kind == "requests" else actual)
        if not adj_w and not t.lines:
            return
        self.counters.settle(adj_w, adj_a, self.lines(p) if t.lines else [], ctx.cost_usd, t.lines, t.estimate)

    def _spent(self, line: BudgetLine, spend: float, cost: float) -> None:
        """Counters' on_spend: a budget's spend after a settlement that added `cost`."""
        # gauges are scraped every few seconds: remember the value, the ticker sets them once a second
        self._spend_now[(line.scope, line.label)] = (spend, line.budget.usd)
        usd = line.budget.usd
        if spend >= usd > spend - cost:  # this settlement reached the limit (one settlement only, even on Redis)
            self.events.emit(exceeded_event(line, spend))
        if spend < line.first_alert:
            return
        for threshold in crossed(line, spend - cost, spend):
            self._tasks.spawn(self._alert(line, threshold, spend))

    def _publish_gauges(self) -> None:
        if not self.rec.enabled:
            self._spend_now.clear()
            return
        if self._local is not None:  # in-process spend is a dict read: no need to track it per call
            for (scope, label), line in list(self._gauge_lines.items()):
                self._spend_now.setdefault((scope, label), (self._local.book.get(line), line.budget.usd))
        for (scope, label), (spend, usd) in self._spend_now.items():
            m.BUDGET_SPEND.labels(scope, label).set(spend)
            m.BUDGET_LIMIT.labels(scope, label).set(usd)
        self._spend_now.clear()

    async def _alert(self, line: BudgetLine, threshold: float, spend: float) -> None:
        first = True
        if self.store is not None:
            try:  # the ledger's unique row decides which replica reports a crossing
                first = await self.store.record_budget_alert(line.scope, line.name, line.period.start, threshold,
                                                             spend, line.budget.usd)
            except Exception as err:
                m.BACKEND_ERRORS.labels("db", "budget_alert").inc()
                log.warning("budget_alert_record_failed", error=f"{type(err).__name__}: {err}")
        if first:
            log.warning("budget_threshold", scope=line.scope, name=line.label, threshold=threshold,
                        spend_usd=round(spend, 6), limit_usd=line.budget.usd)
            self.events.emit(alert_event(line, threshold, spend))

    # ------------------------------------------------------------ status (admin API, /v1/usage)
    async def budget_status(self, scope: str, name: str, label: str, key_budget: Any) -> dict[str, Any]:
        line = BudgetLine(scope, name, label, key_budget, self.clock.current(key_budget.period))
        self._seed([line])
        if (task := self._seeding.get(line.spend_key)) is not None:  # a status answer waits for history
            await asyncio.wait([task], timeout=10)
        spend = await self.counters.spend(line)
        return {"scope": scope, "name": label, "id": name, "usd": key_budget.usd, **line.period.as_dict(),
                "spend_usd": round(spend, 8), "remaining_usd": round(max(0.0, key_budget.usd - spend), 8),
                "used_fraction": round(spend / key_budget.usd, 6), "alert_thresholds": key_budget.alert_thresholds}

    async def limit_status(self, key: KeyInfo) -> list[dict[str, Any]]:
        out = []
        for w in all_windows(key, self.planner.team_limits.get(key.team) if key.team else None):
            remaining, reset_in = await self.counters.window_stats(w)
            out.append({"scope": w.scope, "sub": w.sub or None, "name": w.sub_owner or w.owner, "metric": w.metric,
                        "limit": w.limit, "remaining": remaining, "reset_seconds": round(reset_in, 3)})
        return out
