"""Who is calling: the caller's key as every stage sees it (never the secret), and the key digest."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import UTC, datetime
from fnmatch import fnmatchcase
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # annotations only: core depends on no other package at run time
    from proxy.config.agents import OptimizePolicy
    from proxy.config.base import Budget, CachePolicy, Limits


@dataclass(slots=True)
class KeyInfo:
    """A caller's key as the pipeline sees it; never holds the bearer secret. A key with `signing: required`
    holds its signing secret (HMAC verification needs the secret itself; never logged, repr'd or serialised)."""

    id: str
    name: str
    models: list[str] = field(default_factory=lambda: ["*"])
    limits: Limits | None = None
    budget: Budget | None = None
    user: str | None = None
    team: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    expires_at: datetime | None = None
    cache: CachePolicy | None = None
    optimize: OptimizePolicy | None = None  # prompt optimisation for this key's calls
    disabled: bool = False
    source: str = "config"  # config | db
    # the console user owning the key: their limits and budget apply across all their keys. For such a key
    # `user` is the user id (the ledger's `user` column), `user_label` their e-mail (messages, gauges)
    user_id: str | None = None
    user_limits: Limits | None = None
    user_budget: Budget | None = None
    user_label: str | None = None
    signing_secret: bytes | None = field(default=None, repr=False)
    _allowed: dict[str, bool] = field(default_factory=dict, repr=False)

    def may_use(self, alias: str) -> bool:
        ok = self._allowed.get(alias)
        if ok is None:
            ok = any(p == "*" or fnmatchcase(alias, p) for p in self.models)
            self._allowed[alias] = ok
        return ok

    def expired(self, now: datetime | None = None) -> bool:
        return self.expires_at is not None and (now or datetime.now(UTC)) >= self.expires_at


def sha256_hex(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()
