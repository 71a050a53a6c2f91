"""LedgerStore: the usage ledger, virtual keys, audit log and budget alerts on SQLite or PostgreSQL.

SQLAlchemy 2 async core on aiosqlite / asyncpg. Usage and lifecycle live here; keys, audit and alerts
in `keys.py`. Every method opens its own short transaction, so the store is safe to share between
the ledger writer, the admin API and the budget checks.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from itertools import compress
from operator import is_not
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from proxy.ledger import db
from proxy.ledger.agents import AgentsMixin
from proxy.ledger.keys import KeysMixin
from proxy.ledger.responses import ResponsesMixin
from proxy.ledger.rows import USAGE_FIELDS, UsageRow, as_utc, usage_values, utcnow
from proxy.ledger.schema import usage
from proxy.ledger.users import UsersMixin

if TYPE_CHECKING:  # annotations only: the config layer sits above this one
    from proxy.config import DatabaseConfig

GROUP_BYS = ("day", "key", "provider", "alias", "team", "model", "user", "agent")
FILTERS = frozenset({"key", "user", "team", "provider", "alias", "model", "status", "since", "until", "agent",
                     "chain_id"})
_GROUP_COLUMNS = {"key": "key_id", "provider": "provider", "alias": "alias", "team": "team",
                  "model": "upstream_model", "user": "user", "agent": "agent"}


_BOOL = USAGE_FIELDS.index("cache_hit")
assert USAGE_FIELDS[_BOOL:_BOOL + 2] == ("cache_hit", "stream") and USAGE_FIELDS[-1] == "created_at"
_NONES = (None,) * len(USAGE_FIELDS)
_SQLITE_INSERTS: dict[tuple[bool, ...], str] = {}  # which columns a row has (not NULL) -> its INSERT
_ALL = (True,) * len(USAGE_FIELDS)
_MAX_RUNS = 4


def _sqlite_row(r: UsageRow) -> tuple[Any, ...]:
    """A row as SQLAlchemy stores it in SQLite: booleans as 0/1, UTCDateTime as naive UTC text with
    microseconds. (No list from star-assignment, no replace(): the offset is cut off the text.)"""
    values = usage_values(r)
    created_at = values[-1]
    if created_at.tzinfo is not UTC:  # rows from utcnow() already are
        created_at = as_utc(created_at)
    return (*values[:_BOOL], int(values[_BOOL]), int(values[_BOOL + 1]), *values[_BOOL + 2:-1],
            created_at.isoformat(" ", "microseconds")[:26])


def _sqlite_batches(rows: Sequence[UsageRow]) -> list[tuple[str, list[tuple[Any, ...]]]]:
    """Runs of consecutive rows with the same NULL columns, each with an INSERT that names only the other
    columns (left out, a nullable column without a default is NULL). sqlite3 binds an int, float or str
    directly but None (and bool) through its adapter lookup, several attribute lookups each: a usual row
    has five NULLs, and binding them cost a quarter of the insert. Rows keep their order (and ids); a
    batch of many short runs goes in as one full-width INSERT instead, as each run is a round trip."""
    full = [_sqlite_row(r) for r in rows]
    runs: list[tuple[tuple[bool, ...], list[tuple[Any, ...]]]] = []
    last: tuple[bool, ...] | None = None
    for values in full:
        present = tuple(map(is_not, values, _NONES))
        if present != last:
            if len(runs) == _MAX_RUNS:
                return [(_sqlite_insert(_ALL), full)]
            runs.append((present, []))
            last = present
        runs[-1][1].append(tuple(compress(values, present)))
    return [(_sqlite_insert(present), run) for present, run in runs]


def _sqlite_insert(present: tuple[bool, ...]) -> str:
    sql = _SQLITE_INSERTS.get(present)
    if sql is None:
        cols = [f'"{c}"' for c in compress(USAGE_FIELDS, present)]
        sql = f"INSERT INTO usage ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))})"
        if len(_SQLITE_INSERTS) < 1024:
            _SQLITE_INSERTS[present] = sql
    return sql


class LedgerStore(KeysMixin, UsersMixin, AgentsMixin, ResponsesMixin):
    def __init__(self, url: str = "sqlite:///gateway.db", *, schema: str | None = None, pool_size: int = 5,
                 echo: bool = False, clock: Callable[[], datetime] | None = None) -> None:
        self.url = url
        self.dialect = db.async_url(url)[0].get_backend_name()  # also rejects unsupported URLs early
        self._schema = schema
        self._pool_size = pool_size
        self._echo = echo
        self._engine: AsyncEngine | None = None
        self._now = clock or utcnow  # injectable so tests can move time (rotation grace, alerts)

    @classmethod
    def from_config(cls, cfg: DatabaseConfig, **kwargs: Any) -> LedgerStore:
        return cls(cfg.url, **kwargs)

    @property
    def engine(self) -> AsyncEngine:
        if self._engine is None:
            raise RuntimeError("LedgerStore is not connected; call `await store.connect()` first")
        return self._engine

    # ------------------------------------------------------------ lifecycle
    async def connect(self) -> None:
        """Create the engine and check the database answers (fails fast on a bad URL or password)."""
        if self._engine is not None:
            return
        engine = db.create_engine(self.url, schema=self._schema, pool_size=self._pool_size, echo=self._echo)
        try:
            async with engine.connect() as conn:
                await conn.execute(sa.text("SELECT 1"))
        except BaseException:
            await engine.dispose()
            raise
        self._engine = engine

    async def migrate(self) -> bool:
        """Bring the schema to the newest Alembic revision; a no-op (False) when it is already there."""
        await self.connect()
        return await db.upgrade(self.engine)

    async def revision(self) -> str | None:
        return await db.current_revision(self.engine)

    async def close(self) -> None:
        if self._engine is not None:
            engine, self._engine = self._engine, None
            await engine.dispose()

    async def check(self) -> str | None:
        """Readiness check: None when the database answers, else a short description."""
        try:
            async with self.engine.connect() as conn:
                await conn.execute(sa.text("SELECT 1"))
        except Exception as err:
            return f"database: {type(err).__name__}: {err}"
        return None

    # ------------------------------------------------------------ usage
    async def insert_usage(self, rows: Sequence[UsageRow]) -> None:
        if not rows:
            return
        async with self.engine.begin() as conn:
            if self.dialect == "sqlite":
                # the driver's executemany on plain tuples: SQLAlchemy's per-row bind processing (datetime
                # to text, booleans) cost more than SQLite's own insert (~30 vs ~20 us a row)
                for sql, values in _sqlite_batches(rows):
                    await conn.exec_driver_sql(sql, values)
            else:
                await conn.execute(usage.insert(), [r.as_dict() for r in rows])

    async def recent_usage(self, key_id: str | None = None, limit: int = 50, *,
                           user: str | None = None) -> list[dict[str, Any]]:
        """Newest rows first; `key_id` may also be a key name, None means every key; `user` (a user id or
        a key's free-form user) narrows to that user's calls."""
        stmt = sa.select(usage).order_by(usage.c.created_at.desc(), usage.c.id.desc()).limit(limit)
        if key_id is not None:
            stmt = stmt.where(_key_match(key_id))
        if user is not None:
            stmt = stmt.where(usage.c.user == user)
        async with self.engine.connect() as conn:
            return [dict(r._mapping) for r in await conn.execute(stmt)]

    async def spend(self, scope: str, name_or_id: str, since: datetime,
                    until: datetime | None = None) -> float:
        """Sum of cost_usd for a key (id or name) or a team since `since` (the budget period start)."""
        if scope == "key":
            who = _key_match(name_or_id)
        elif scope == "team":
            who = usage.c.team == name_or_id
        elif scope == "user":  # a user's keys write the user id in `user`
            who = usage.c.user == name_or_id
        else:
            raise ValueError(f"scope must be 'key', 'team' or 'user', not {scope!r}")
        stmt = sa.select(sa.func.coalesce(sa.func.sum(usage.c.cost_usd), 0.0)).where(
            who, usage.c.created_at >= as_utc(since))
        if until is not None:
            stmt = stmt.where(usage.c.created_at < as_utc(until))
        async with self.engine.connect() as conn:
            return round(float((await conn.execute(stmt)).scalar_one()), 10)

    async def query_usage(self, filters: Mapping[str, Any] | None = None,
                          group_by: str | None = None) -> list[dict[str, Any]]:
        """Aggregates per group (or one total row when `group_by` is None).

        Percentiles are linear-interpolated like PostgreSQL's percentile_cont, which computes them in
        SQL; on SQLite (no percentile functions) the latencies are fetched and computed here.
        """
        if group_by is not None and group_by not in GROUP_BYS:
            raise ValueError(f"group_by must be one of {', '.join(GROUP_BYS)}, not {group_by!r}")
        where = _where(filters or {})
        c = usage.c
        g = self._group_expr(group_by).label("g") if group_by else sa.literal_column("NULL").label("g")
        cols: list[Any] = [
            g,
            sa.func.count().label("calls"),
            *(sa.func.coalesce(sa.func.sum(c[n]), 0).label(n)
              for n in ("prompt_tokens", "completion_tokens", "cached_tokens")),
            *(sa.func.coalesce(sa.func.sum(c[n]), 0.0).label(n) for n in ("cost_usd", "saved_usd")),
            sa.func.coalesce(sa.func.sum(sa.case((c.status >= 400, 1), else_=0)), 0).label("errors"),
            sa.func.coalesce(sa.func.sum(sa.case((c.cache_hit, 1), else_=0)), 0).label("cache_hits"),
            sa.func.max(c.key_name).label("key_name"),
            sa.func.max(c.created_at).label("last_at"),  # a key's "last use" in the console
            # prompt optimisation: estimated prompt tokens saved, and their price
            sa.func.coalesce(sa.func.sum(c.prompt_tokens_original - c.prompt_tokens_sent), 0).label("saved_tokens"),
            sa.func.coalesce(sa.func.sum(c.prompt_saved_usd), 0.0).label("prompt_saved_usd"),
        ]
        pg = self.dialect == "postgresql"
        if pg:
            cols += [sa.func.percentile_cont(q).within_group(c.latency_ms).label(f"p{int(q * 100)}")
                     for q in (0.5, 0.95)]
        stmt = sa.select(*cols).where(*where)
        if group_by:
            stmt = stmt.group_by(g)
        async with self.engine.connect() as conn:
            groups = [dict(r._mapping) for r in await conn.execute(stmt)]
            if not pg:
                latencies = await self._latencies(conn, g, where, bool(group_by))
        out = []
        for row in groups:
            if pg:
                p50, p95 = row["p50"], row["p95"]
            else:
                lat = latencies.get(row["g"], [])
                p50, p95 = percentile(lat, 0.5), percentile(lat, 0.95)
            out.append(_group_row(group_by, row, p50, p95))
        if group_by == "day":
            out.sort(key=lambda r: r["day"] or "")
        else:
            out.sort(key=lambda r: (-r["cost_usd"], -r["calls"]))
        return out

    def _group_expr(self, group_by: str) -> sa.ColumnElement[Any]:
        c = usage.c
        if group_by == "day":
            # constants as literal SQL, not bind parameters: PostgreSQL only matches the GROUP BY
            # expression to the select list when both are textually identical
            if self.dialect == "sqlite":
                return sa.func.date(c.created_at, type_=sa.Text)  # stored as 'YYYY-MM-DD hh:mm:ss' UTC
            utc = sa.func.timezone(sa.literal_column("'UTC'"), c.created_at)
            return sa.func.to_char(utc, sa.literal_column("'YYYY-MM-DD'"), type_=sa.Text)
        return c[_GROUP_COLUMNS[group_by]]

    @staticmethod
    async def _latencies(conn: Any, g: Any, where: list[Any], grouped: bool) -> dict[Any, list[float]]:
        stmt = sa.select(g, usage.c.latency_ms).where(*where)
        stmt = stmt.order_by(g, usage.c.latency_ms) if grouped else stmt.order_by(usage.c.latency_ms)
        out: dict[Any, list[float]] = {}
        result = await conn.stream(stmt)
        async for key, latency in result:
            out.setdefault(key, []).append(latency)
        return out


def percentile(values: Sequence[float], q: float) -> float | None:
    """Linear interpolation between closest ranks of sorted `values` (same as percentile_cont)."""
    if not values:
        return None
    pos = (len(values) - 1) * q
    lo = math.floor(pos)
    hi = min(lo + 1, len(values) - 1)
    return float(values[lo] + (values[hi] - values[lo]) * (pos - lo))


def _group_row(group_by: str | None, row: dict[str, Any], p50: float | None,
               p95: float | None) -> dict[str, Any]:
    calls = int(row["calls"])
    errors = int(row["errors"])
    out: dict[str, Any] = {}
    if group_by == "key":
        out["key"] = row["key_name"] or row["g"]
        out["key_id"] = row["g"]
    elif group_by:
        out[group_by] = row["g"]
    out.update(
        calls=calls,
        prompt_tokens=int(row["prompt_tokens"]),
        completion_tokens=int(row["completion_tokens"]),
        cached_tokens=int(row["cached_tokens"]),
        cost_usd=round(float(row["cost_usd"]), 10),  # hide float summation noise (0.30000000000000004)
        saved_usd=round(float(row["saved_usd"]), 10),
        errors=errors,
        error_rate=round(errors / calls, 6) if calls else 0.0,
        latency_p50_ms=None if p50 is None else round(float(p50), 3),
        latency_p95_ms=None if p95 is None else round(float(p95), 3),
        cache_hits=int(row["cache_hits"]),
        last_call_at=as_utc(row["last_at"]).isoformat() if row["last_at"] is not None else None,
        prompt_saved_tokens=int(row["saved_tokens"]),
        prompt_saved_usd=round(float(row["prompt_saved_usd"]), 10),
    )
    return out


def _key_match(name_or_id: str) -> sa.ColumnElement[bool]:
    return sa.or_(usage.c.key_id == name_or_id, usage.c.key_name == name_or_id)


def _status_clause(value: int | str) -> sa.ColumnElement[bool]:
    text = str(value).strip().lower()
    if len(text) == 3 and text[0] in "12345" and text[1:] == "xx":
        base = int(text[0]) * 100
        return usage.c.status.between(base, base + 99)
    if text.isdigit():
        return usage.c.status == int(text)
    raise ValueError(f"status filter must be a status code or a class like '4xx', not {value!r}")


def _where(filters: Mapping[str, Any]) -> list[sa.ColumnElement[bool]]:
    unknown = set(filters) - FILTERS
    if unknown:
        raise ValueError(f"unknown usage filter(s): {', '.join(sorted(unknown))}")
    c = usage.c
    out: list[sa.ColumnElement[bool]] = []
    for name, value in filters.items():
        if value is None or value == "":
            continue
        if name == "key":
            out.append(_key_match(str(value)))
        elif name == "model":
            out.append(c.upstream_model == value)
        elif name == "status":
            out.append(_status_clause(value))
        elif name == "since":
            out.append(c.created_at >= as_utc(value))
        elif name == "until":
            out.append(c.created_at < as_utc(value))
        elif isinstance(value, list | tuple):  # any of these (a user's id and the name it was given as)
            out.append(c[name].in_(value))
        else:
            out.append(c[name] == value)
    return out
