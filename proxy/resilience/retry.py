"""What a failed attempt means for the next one: retry, move on, fall back, or stop — and how long to wait."""

from __future__ import annotations

import random

from proxy.core.errors import UpstreamError

# outcome of one failed attempt
RETRY = 0  # transient: retry (another deployment at once, the same one after a backoff)
SKIP = 1  # this deployment cannot serve the request (its credentials, its model name): try others
CONTEXT = 2  # the prompt is too long for this model: context_window_fallbacks
CONTENT = 3  # the upstream's content filter refused: content_policy_fallbacks
CLIENT = 4  # the request itself is wrong: no retry, no fallback, the client gets the error

_BY_KIND = {
    "connect": RETRY, "timeout": RETRY, "rate_limit": RETRY, "server": RETRY, "overloaded": RETRY,
    "bad_response": RETRY, "stream_cut": RETRY,
    "auth": SKIP, "not_found": SKIP, "config": SKIP,  # config: provider misconfigured (no creds, no CLI binary)
    "context_length": CONTEXT,
    "content_filter": CONTENT,
    "bad_request": CLIENT,
}
# outcomes that say the deployment is unhealthy (breaker failures); the others prove it answered
BREAKER_FAILURES = frozenset({RETRY, SKIP})


def classify(err: UpstreamError) -> int:
    outcome = _BY_KIND.get(err.kind)
    if outcome is None:
        return RETRY if err.retryable else CLIENT
    return outcome


def backoff_delay(retry_no: int, base: float, cap: float) -> float:
    """Exponential backoff with full jitter (AWS architecture blog): uniform in [0, min(cap, base*2^n)].

    Full jitter spreads the retries of many clients hit by the same outage instead of having them
    come back in synchronised waves."""
    ceiling = min(cap, base * (1 << min(retry_no, 30)))
    return random.uniform(0.0, ceiling) if ceiling > 0 else 0.0


def retry_delay(retry_no: int, base: float, cap: float, err: UpstreamError | None) -> float:
    """Wait before retrying the deployment that failed with `err`: the backoff, or its Retry-After
    when that is longer (the caller has already refused Retry-After values above the cap)."""
    delay = backoff_delay(retry_no, base, cap)
    if err is not None and err.retry_after is not None and err.retry_after > delay:
        delay = err.retry_after
    return delay
