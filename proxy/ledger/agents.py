"""Agents and their immutable versions (mixed into `LedgerStore`).

`agents` holds one row per agent naming its live version (rollback moves it) and the latest one written;
`agent_versions` one row per version, never updated. Deleting an agent removes both (the usage ledger keeps
the name and version of past calls).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from proxy.ledger.schema import agent_versions, agents


class DuplicateAgentError(ValueError):
    """An agent with this name exists already."""


def _version(row: Any) -> dict[str, Any]:
    r = row._mapping
    return {"name": r["name"], "version": r["version"], **r["spec"], "created_by": r["created_by"],
            "created_at": r["created_at"].isoformat()}


class AgentsMixin:
    engine: AsyncEngine
    _now: Callable[[], datetime]

    async def create_agent(self, name: str, spec: dict[str, Any], actor: str | None) -> dict[str, Any]:
        now = self._now()
        try:
            async with self.engine.begin() as conn:
                await conn.execute(agents.insert().values(name=name, version=1, latest_version=1, created_at=now,
                                                          updated_at=now))
                await conn.execute(agent_versions.insert().values(name=name, version=1, spec=spec,
                                                                  created_by=actor, created_at=now))
        except sa.exc.IntegrityError:
            raise DuplicateAgentError(name) from None
        found = await self.get_agent(name)
        assert found is not None
        return found

    async def get_agent(self, name: str, version: int | None = None) -> dict[str, Any] | None:
        """The live version (or `version`) with `live_version` and `latest_version`; None when unknown."""
        async with self.engine.connect() as conn:
            head = (await conn.execute(sa.select(agents).where(agents.c.name == name))).first()
            if head is None:
                return None
            v = head.version if version is None else version
            row = (await conn.execute(sa.select(agent_versions).where(
                agent_versions.c.name == name, agent_versions.c.version == v))).first()
        if row is None:
            return None
        return {**_version(row), "live_version": head.version, "latest_version": head.latest_version}

    async def list_agents(self) -> list[dict[str, Any]]:
        j = agents.join(agent_versions, sa.and_(agent_versions.c.name == agents.c.name,
                                                 agent_versions.c.version == agents.c.version))
        stmt = sa.select(agent_versions, agents.c.latest_version).select_from(j).order_by(agents.c.name)
        async with self.engine.connect() as conn:
            rows = (await conn.execute(stmt)).all()
        return [{**_version(r), "live_version": r.version, "latest_version": r.latest_version} for r in rows]

    async def agent_versions(self, name: str) -> list[dict[str, Any]]:
        stmt = sa.select(agent_versions).where(agent_versions.c.name == name).order_by(agent_versions.c.version)
        async with self.engine.connect() as conn:
            return [_version(r) for r in await conn.execute(stmt)]

    async def add_agent_version(self, name: str, spec: dict[str, Any], actor: str | None) -> int | None:
        """Writes version latest + 1 and makes it live; None when the agent does not exist."""
        now = self._now()
        try:
            async with self.engine.begin() as conn:
                head = (await conn.execute(sa.select(agents).where(agents.c.name == name).with_for_update())).first()
                if head is None:
                    return None
                v = head.latest_version + 1
                await conn.execute(agent_versions.insert().values(name=name, version=v, spec=spec, created_by=actor,
                                                                  created_at=now))
                await conn.execute(agents.update().where(agents.c.name == name).values(
                    version=v, latest_version=v, updated_at=now))
        except sa.exc.IntegrityError:  # two PATCHes raced for the same number (SQLite has no row lock)
            raise DuplicateAgentError(name) from None
        return v

    async def set_agent_version(self, name: str, version: int) -> bool:
        """Rollback: make an existing version live. False when the agent or the version does not exist."""
        async with self.engine.begin() as conn:
            exists = (await conn.execute(sa.select(agent_versions.c.version).where(
                agent_versions.c.name == name, agent_versions.c.version == version))).first()
            if exists is None:
                return False
            res = await conn.execute(agents.update().where(agents.c.name == name).values(
                version=version, updated_at=self._now()))
        return bool(res.rowcount)

    async def delete_agent(self, name: str) -> bool:
        async with self.engine.begin() as conn:
            res = await conn.execute(agents.delete().where(agents.c.name == name))
            await conn.execute(agent_versions.delete().where(agent_versions.c.name == name))
        return bool(res.rowcount)
