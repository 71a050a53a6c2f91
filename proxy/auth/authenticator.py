"""Stage 1: authentication (who is calling) and authorisation (may they use this alias)."""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

from aiohttp import web

from proxy.auth.signing import SignatureVerifier
from proxy.config import GatewayConfig
from proxy.config.access import KeyConfig, UserConfig
from proxy.core.errors import AUTHENTICATION, PERMISSION, GatewayError
from proxy.core.identity import KeyInfo, sha256_hex

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


def key_from_config(k: KeyConfig, owner: UserConfig | None = None) -> tuple[str, KeyInfo]:
    """A gateway.yaml key; `owner` is its `user_id`'s entry of `users:` (whose limits and budget apply)."""
    digest = (k.key_sha256 or sha256_hex(k.key or "")).lower()
    info = KeyInfo(id=f"cfg:{k.name}", name=k.name, models=k.models, limits=k.limits, budget=k.budget,
                   user=owner.id if owner else k.user, team=k.team, metadata=k.metadata,
                   expires_at=parse_expiry(k.expires_at), cache=k.cache, optimize=k.optimize,
                   disabled=bool(owner and owner.disabled), user_id=owner.id if owner else None,
                   user_limits=owner.limits if owner else None, user_budget=owner.budget if owner else None,
                   user_label=owner.email if owner else None,
                   signing_secret=k.signing_secret.encode() if k.signing_secret else None)
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
# a browser's console session (cookie) -> the digest of the key it acts with; None without a session cookie,
# raises the GatewayError (401 expired, 403 csrf_failed / no_key) otherwise (proxy.users, wired in app.py)
SessionKey = Callable[[web.Request], Awaitable[str | None]]


class Authenticator:
    def __init__(self, keys: list[KeyConfig], lookup: KeyLookup | None = None,
                 users: list[UserConfig] | None = None, signatures: SignatureVerifier | None = None) -> None:
        owners = {u.id: u for u in users or ()}
        self._by_hash: dict[str, KeyInfo] = dict(key_from_config(k, owners.get(k.user_id or "")) for k in keys)
        self.lookup = lookup
        self.signatures = signatures or SignatureVerifier()
        # told the client IP of every wrong key (the failed-auth throttle, admission.clientguard.ClientGuard.failed)
        self.on_failure: Callable[[str], Awaitable[None]] | None = None
        # told (key id, client IP) of every accepted key: cheap and synchronous (the last-used recorder)
        self.on_success: Callable[[str, str], None] | None = None
        # consulted only when a request has no key header: the header-based API is unchanged by it
        self.session_key: SessionKey | None = None

    async def find(self, secret: str) -> KeyInfo | None:
        """The key this secret belongs to (config or database), None when it is no key; not its state."""
        return await self.find_digest(sha256_hex(secret))

    async def find_digest(self, digest: str) -> KeyInfo | None:
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
            digest = await self.session_key(request) if self.session_key is not None else None
            if digest is None:
                raise GatewayError(401, "Missing API key. Send it as `Authorization: Bearer <key>`.",
                                   AUTHENTICATION, code="missing_api_key")
            info = await self.find_digest(digest)
            if info is None:  # the session's key was deleted or rotated since
                raise GatewayError(401, "The key this console session used no longer exists; sign in again.",
                                   AUTHENTICATION, code="invalid_api_key")
            return self._used(self.check(info), request)
        info = await self.find(secret)
        if info is None:
            if self.on_failure is not None:
                await self.on_failure(request.remote or "")
            raise GatewayError(401, "Incorrect API key provided.", AUTHENTICATION, code="invalid_api_key")
        if info.disabled or info.expired():
            self.check(info)
        return self._used(info, request)

    def _used(self, info: KeyInfo, request: web.Request) -> KeyInfo:
        if self.on_success is not None:
            self.on_success(info.id, request.remote or "")
        return info

    @staticmethod
    def check(info: KeyInfo) -> KeyInfo:
        """A found key that may be used now: 401 when disabled (or its user is) or expired."""
        if info.disabled:
            raise GatewayError(401, "This API key has been disabled.", AUTHENTICATION, code="key_disabled")
        if info.expired():
            raise GatewayError(401, "This API key has expired.", AUTHENTICATION, code="key_expired")
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
