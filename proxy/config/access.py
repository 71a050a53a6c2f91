"""Who may call: keys, console users and sessions, teams, admin keys."""

from __future__ import annotations

import hashlib
import re
from typing import Any, Literal

from pydantic import Field, PrivateAttr, model_validator

from proxy.config.agents import OptimizePolicy
from proxy.config.base import Budget, CachePolicy, Limits
from proxy.core.strict import Strict
from proxy.core.units import Duration


# ---------------------------------------------------------------- keys
class KeyConfig(Strict):
    name: str = Field(min_length=1)
    key: str | None = Field(None, repr=False)
    key_sha256: str | None = None
    models: list[str] = Field(default_factory=lambda: ["*"])
    limits: Limits | None = None
    budget: Budget | None = None
    user: str | None = None
    team: str | None = None
    metadata: dict[str, Any] = Field(default_factory=dict)
    expires_at: str | None = None
    cache: CachePolicy | None = None
    user_id: str | None = None  # the `users:` entry (id or email) this key belongs to
    # HMAC request signing (auth/signing.py): `required` needs `signing_secret` (e.g. "${VAR}")
    signing: Literal["off", "required"] = "off"
    signing_secret: str | None = Field(None, repr=False)
    optimize: OptimizePolicy | None = None  # prompt optimisation for this key's calls

    @model_validator(mode="after")
    def _one_secret(self) -> KeyConfig:
        _one_of(self.key, self.key_sha256)
        if self.signing == "required" and not self.signing_secret:
            raise ValueError("signing: required needs `signing_secret` (is its ${VAR} set?)")
        if self.signing_secret and self.signing != "required":
            raise ValueError("signing_secret is only used with `signing: required`")
        if self.signing_secret and len(self.signing_secret) < 16:
            raise ValueError("signing_secret must be at least 16 characters")
        return self


def _one_of(key: str | None, key_sha256: str | None) -> None:
    if bool(key) == bool(key_sha256):
        raise ValueError("give exactly one of `key` or `key_sha256`")
    if key_sha256 and not re.fullmatch(r"[0-9a-fA-F]{64}", key_sha256):
        raise ValueError("key_sha256 must be 64 hex characters")


ROLES = ("admin", "member", "viewer")
Role = Literal["admin", "member", "viewer"]


class UserConfig(Strict):
    """A console user declared in gateway.yaml (read-only in the admin API); id defaults to `cfg:<email>`."""

    id: str | None = None
    email: str = Field(min_length=3, max_length=254)
    name: str = Field(min_length=1, max_length=200)
    team: str | None = None
    role: Role = "member"
    password_hash: str | None = None  # Argon2id, from `gateway hash-password`; never a clear password
    limits: Limits | None = None
    budget: Budget | None = None
    disabled: bool = False

    @model_validator(mode="before")
    @classmethod
    def _no_clear_password(cls, v: Any) -> Any:
        if isinstance(v, dict) and "password" in v:
            raise ValueError("give `password_hash` (from `gateway hash-password`), never a clear `password`")
        return v

    @model_validator(mode="after")
    def _normalise(self) -> UserConfig:
        self.email = self.email.strip().lower()
        if "@" not in self.email:
            raise ValueError("email must be an e-mail address")
        if self.password_hash is not None and not self.password_hash.startswith("$argon2id$"):
            raise ValueError("password_hash must be an Argon2id hash ($argon2id$...) from `gateway hash-password`")
        if self.id is None:
            self.id = f"cfg:{self.email}"
        return self


class ConsoleConfig(Strict):
    """Console sign-in: session lifetime and the failed sign-in throttle (per client IP and per account)."""

    session_ttl: Duration = 12 * 3600
    failed_signins_per_ip: int = Field(20, ge=0, le=1_000_000)  # within failed_signin_window; 0 = off
    failed_signins_per_account: int = Field(5, ge=0, le=1_000_000)
    failed_signin_window: Duration = 15 * 60


class TeamConfig(Strict):
    budget: Budget | None = None
    limits: Limits | None = None


# ---------------------------------------------------------------- infrastructure
class AdminKey(Strict):
    """One of several admin keys (rotation without downtime: add the new one, move callers, drop the old);
    its `name` is the actor in the audit log."""

    name: str = Field(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9_.:-]+$")
    key: str | None = Field(None, repr=False)
    key_sha256: str | None = None

    @model_validator(mode="after")
    def _one_secret(self) -> AdminKey:
        _one_of(self.key, self.key_sha256)
        return self

    @property
    def digest(self) -> str:
        return (self.key_sha256 or hashlib.sha256((self.key or "").encode()).hexdigest()).lower()


class AdminConfig(Strict):
    key: str | None = Field(None, repr=False)  # the single admin key of old: named `admin` in the audit log
    keys: list[AdminKey] = Field(default_factory=list)
    _digests: tuple[tuple[str, str], ...] = PrivateAttr(default=())

    @model_validator(mode="after")
    def _names(self) -> AdminConfig:
        names = [k.name for k in self.keys] + (["admin"] if self.key else [])
        if len(names) != len(set(names)):
            raise ValueError("admin.keys: names must be unique (`admin` is the name of `admin.key`)")
        entries = [AdminKey(name="admin", key=self.key)] if self.key else []
        self._digests = tuple((k.digest, k.name) for k in [*entries, *self.keys])  # computed once, here
        return self

    @property
    def digests(self) -> tuple[tuple[str, str], ...]:
        """(SHA-256 hex of the secret, name) of every admin key."""
        return self._digests
