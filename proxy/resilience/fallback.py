"""Fallback chains between aliases and the single error the client gets when every path failed."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from proxy.core.errors import UNAVAILABLE, UpstreamError
from proxy.resilience.retry import CONTENT, CONTEXT

if TYPE_CHECKING:
    from proxy.core.context import RequestContext
    from proxy.resilience.balancer import AliasPlan

GENERIC = 0  # reason an alias failed: every deployment failed / was unavailable
REASON_NAMES = {GENERIC: "error", CONTEXT: "context_window", CONTENT: "content_policy"}


class AliasFailed(Exception):
    """Every try of one alias failed; `reason` picks the fallback list, `error` is the last failure
    (None when no deployment could even be tried: open breakers, no capacity)."""

    def __init__(self, reason: int, error: UpstreamError | None) -> None:
        super().__init__(REASON_NAMES.get(reason, "error"))
        self.reason = reason
        self.error = error


def fallback_list(origin: AliasPlan, reason: int) -> tuple[str, ...]:
    if reason == CONTEXT:
        return origin.context_fallbacks
    if reason == CONTENT:
        return origin.content_fallbacks
    return origin.fallbacks


def next_alias(origin: AliasPlan, reason: int, visited: set[str]) -> str | None:
    """The next alias to try. The lists of the alias the client was routed to decide, whatever
    alias failed last: fallbacks are one level deep, so chains stay predictable and cannot loop."""
    for name in fallback_list(origin, reason):
        if name not in visited:
            return name
    return None


# things that look like credentials in upstream messages (some echo a masked key back)
_SECRETS = re.compile(
    r"(?i)(bearer\s+\S+|\b(?:sk|rk|pk)-[A-Za-z0-9_\-*.]{4,}|AIza[0-9A-Za-z_\-]{10,}"
    r"|\b(?:api[_-]?key|token|secret|password|signature)\s*[=:]\s*\S+)")


def sanitize(message: str, kind: str | None = None) -> str:
    """An upstream message made safe to show: anything credential-like redacted, bounded length."""
    return _SECRETS.sub("[redacted]", message)[:300]


def attempts_listing(ctx: RequestContext) -> list[dict[str, Any]]:
    return [{"alias": a.alias, "provider": a.provider, "model": a.model, "status": a.status,
             "error": a.error or "ok", "duration_ms": round(a.duration * 1000, 1)} for a in ctx.attempts]


def exhausted(ctx: RequestContext, origin: str, failed: AliasFailed, last: UpstreamError | None,
              tried_aliases: list[str], retry_in: float | None) -> UpstreamError:
    """One clear OpenAI-format error once every path failed, listing the attempts.

    The status follows the last failure so clients keep their usual handling (504 after timeouts,
    429/503 with Retry-After when upstreams are overloaded, 502 otherwise); 503 when no deployment
    could be tried at all. The request's own faults (context too long, content filtered) keep the
    upstream's 400 when no fallback could take them."""
    listing = attempts_listing(ctx)
    via = f" (fallbacks tried: {', '.join(tried_aliases[1:])})" if len(tried_aliases) > 1 else ""
    if failed.reason in (CONTEXT, CONTENT) and failed.error is not None:
        err = failed.error
        err.extra = {**err.extra, "attempts": listing}
        return err
    if last is None:
        headers = {"Retry-After": str(max(1, round(retry_in)))} if retry_in else {}
        err = UpstreamError(503, f"No deployment of model {origin!r} is available right now{via}: circuit "
                            "breakers are open or deployments are at capacity.", kind="unavailable",
                            retryable=True, type=UNAVAILABLE, code="no_healthy_upstream", headers=headers)
        err.extra = {"attempts": listing}
        return err
    n = len(ctx.attempts)
    message = (f"{n} upstream attempt{'s' if n != 1 else ''} for model {origin!r} failed{via}. "
               f"Last error ({last.kind}): {sanitize(last.message, last.kind)}")
    err = UpstreamError(last.status, message, kind=last.kind, retryable=False, type=last.type,
                        code=last.code, retry_after=last.retry_after, upstream_status=last.upstream_status,
                        headers=dict(last.headers))
    err.extra = {"attempts": listing}
    return err
