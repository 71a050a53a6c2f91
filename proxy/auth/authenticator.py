"""Stage 1: authentication (who is calling) and authorisation (may they use this alias)."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from fnmatch import fnmatchcase
from typing import Any

from aiohttp import web

from proxy.auth.signing import SignatureVerifier
from proxy.config import Budget, CachePolicy, GatewayConfig, KeyConfig, Limits
from proxy.core.errors import AUTHENTICATION, PERMISSION, GatewayError


@dataclass(slots=True)
class KeyInfo:
    """A caller's key as the pipeline sees it; never holds the bearer secret. A key with `signing: required`
    holds its signing secret (HMAC verification needs the secret itself; never logged, repr or serialised)."""

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
    disabled: bool = False
    source: str = "config"  # config | db
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


# Every secret README, docs/ or the shipped configs give as a default (`${VAR:-secret}`), with the
# variable that replaces it: anyone can read these, so `gateway serve` refuses them on a public address.
DOCUMENTED_DEFAULT_KEYS = {"sk-gateway-dev": "GATEWAY_DEV_KEY", "sk-gateway-admin": "GATEWAY_ADMIN_KEY"}
_DEFAULT_DIGESTS = {sha256_hex(secret): var for secret, var in DOCUMENTED_DEFAULT_KEYS.items()}


def documented_defaults_in(cfg: GatewayConfig) -> list[tuple[str, str]]:
    """(where in gateway.yaml, the env var to set) for each key or admin key equal to a documented
    default; keys given as `key_sha256` are compared by digest."""
    found = []
    for i, k in enumerate(cfg.keys):
        var = _DEFAULT_DIGESTS.get((k.key_sha256 or sha256_hex(k.key or "")).lower())
        if var:
            found.append((f"keys.{i} ({k.name})", var))
    if cfg.admin.key and (var := _DEFAULT_DIGESTS.get(sha256_hex(cfg.admin.key))):
        found.append(("admin.key", var))
    for i, a in enumerate(cfg.admin.keys):
        if var := _DEFAULT_DIGESTS.get(a.digest):
            found.append((f"admin.keys.{i} ({a.name})", var))
    return found


def parse_expiry(value: str | None) -> datetime | None:
    if not value:
        return None
    dt = datetime.fromisoformat(value.replace("Z", "+00:00"))
    return dt if dt.tzinfo else dt.replace(tzinfo=UTC)


def key_from_config(k: KeyConfig) -> tuple[str, KeyInfo]:
    digest = (k.key_sha256 or sha256_hex(k.key or "")).lower()
    info = KeyInfo(id=f"cfg:{k.name}", name=k.name, models=k.models, limits=k.limits, budget=k.budget,
                   user=k.user, team=k.team, metadata=k.metadata, expires_at=parse_expiry(k.expires_at),
                   cache=k.cache, signing_secret=k.signing_secret.encode() if k.signing_secret else None)
    return digest, info


def presented_key(request: web.Request) -> str | None:
    """The secret from `Authorization: Bearer`, `api-key` or `x-api-key` (in that order)."""
    h = request.headers
    auth = h.get("Authorization")
    if auth:
        scheme, _, token = auth.partition(" ")
        if scheme.lower() == "bearer" and token.strip():
            return token.strip()
    return h.get("api-key") or h.get("x-api-key") or None


# a lookup of keys stored outside gateway.yaml (the admin API's database); returns None when unknown
KeyLookup = Callable[[str], Awaitable[KeyInfo | None]]


class Authenticator:
    def __init__(self, keys: list[KeyConfig], lookup: KeyLookup | None = None,
                 signatures: SignatureVerifier | None = None) -> None:
        self._by_hash: dict[str, KeyInfo] = dict(key_from_config(k) for k in keys)
        self.lookup = lookup
        self.signatures = signatures or SignatureVerifier()
        # told the client IP of every wrong key (the failed-auth throttle, clientip.ClientGuard.failed)
        self.on_failure: Callable[[str], Awaitable[None]] | None = None
        # told (key id, client IP) of every accepted key: cheap and synchronous (the last-used recorder)
        self.on_success: Callable[[str, str], None] | None = None

    async def find(self, secret: str) -> KeyInfo | None:
        """The key this secret belongs to (config or database), None when it is no key; not its state."""
        digest = sha256_hex(secret)
        # Keys are indexed by the SHA-256 of the secret, so lookup timing reveals nothing about the
        # secret itself; the stored digest is still compared in constant time.
        info = self._by_hash.get(digest)
        if info is None and self.lookup is not None:
            info = await self.lookup(digest)
        stored = digest if info is not None else ""
        return info if hmac.compare_digest(stored, digest) else None

    async def authenticate(self, request: web.Request) -> KeyInfo:
        secret = presented_key(request)
        if secret is None:
            raise GatewayError(401, "Missing API key. Send it as `Authorization: Bearer <key>`.",
                               AUTHENTICATION, code="missing_api_key")
        info = await self.find(secret)
        if info is None:
            if self.on_failure is not None:
                await self.on_failure(request.remote or "")
            raise GatewayError(401, "Incorrect API key provided.", AUTHENTICATION, code="invalid_api_key")
        if info.disabled:
            raise GatewayError(401, "This API key has been disabled.", AUTHENTICATION, code="key_disabled")
        if info.expired():
            raise GatewayError(401, "This API key has expired.", AUTHENTICATION, code="key_expired")
        if self.on_success is not None:
            self.on_success(info.id, request.remote or "")
        return info

    async def verify_signature(self, key: KeyInfo, request: web.Request, body: bytes) -> None:
        """For a key with `signing: required`: 401 unless the request is signed (signing.py), once its raw body
        was read. A signature that does not match, or none at all, counts as a failed authentication."""
        if key.signing_secret is None:
            return
        try:
            await self.signatures.verify(key.id, key.signing_secret, request.method, request.raw_path,
                                         request.headers, body)
        except GatewayError as err:
            if err.code in ("invalid_signature", "signature_required") and self.on_failure is not None:
                await self.on_failure(request.remote or "")
            raise

    @staticmethod
    def authorize(key: KeyInfo, alias: str) -> None:
        if not key.may_use(alias):
            raise GatewayError(403, f"This API key may not use model {alias!r}.", PERMISSION,
                               code="model_not_allowed", param="model")
