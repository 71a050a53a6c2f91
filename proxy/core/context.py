"""Per-request state carried through the pipeline stages, and the headers it produces."""

from __future__ import annotations

import time
from dataclasses import dataclass
from random import getrandbits
from typing import TYPE_CHECKING, Any

from proxy.core.usage import Usage

if TYPE_CHECKING:
    from proxy.core.errors import GatewayError
    from proxy.core.identity import KeyInfo


@dataclass(slots=True)
class Attempt:
    """One upstream try, kept for headers, logs, the ledger and the final error listing."""

    provider: str
    model: str
    status: int
    error: str | None = None  # UpstreamError.kind
    duration: float = 0.0
    alias: str = ""


@dataclass(slots=True)
class Native:
    """An inbound API's request as the client sent it, for a deployment that speaks that API itself
    (`wire`: responses, messages, count_tokens): forwarded with the model swapped instead of translated.
    `unsupported` is the first thing the chat translation could not carry (a hosted tool, an unknown field):
    such a request can only be served natively, and that error is the answer where it cannot be."""

    wire: str
    body: dict[str, Any]
    unsupported: Exception | None = None
    headers: dict[str, str] | None = None  # the client's headers the wire forwards (anthropic-beta)


@dataclass(init=False)
class RequestContext:
    """Built for every request: plain defaults live on the class and `__init__` sets only what differs
    per request (a generated dataclass `__init__` assigning all ~30 fields cost ~3 us a request here)."""

    kind: str  # "chat" | "embeddings"
    request_id: str
    client_ip: str
    started: float
    body: dict[str, Any]
    alias: str = ""  # as the client asked
    served_alias: str = ""  # after routing rules / fallbacks
    stream: bool = False
    key: KeyInfo | None = None
    traceparent: str | None = None
    trace_id: str | None = None
    request_headers: Any = None  # the client's request headers (a Mapping): per-request cache control
    native: Native | None = None  # an inbound API's own request, where a deployment may take it as is
    # filled by routing / resilience / provider
    provider: str = ""
    upstream_model: str = ""
    attempts: list[Attempt]
    fallback: str | None = None  # "from->to"
    route_rule: int | None = None
    # filled by the response
    status: int = 200
    error_type: str | None = None
    usage: Usage | None = None
    finish_reason: str | None = None
    ttft: float | None = None
    cost_usd: float = 0.0
    priced: bool = False  # cost_usd is final (Meter.cost prices a call once)
    saved_usd: float = 0.0
    cache_status: str | None = None  # hit | miss | bypass
    cache_key: str | None = None
    estimated_tokens: int = 0
    client_disconnected: bool = False
    delegated: bool = False  # answered by other metered calls (a named chain's steps): not metered itself
    # agents, chains, prompt optimisation (issue 18): ledger columns of their own
    agent: str | None = None  # the agent (model `agent/<name>[@v]`) the call went through, and its version
    agent_version: int | None = None
    chain_id: str | None = None  # the chain this call is a step of
    prompt_tokens_original: int | None = None  # prompt optimisation: estimated prompt tokens before / after
    prompt_tokens_sent: int | None = None
    prompt_saved_usd: float | None = None
    headers: dict[str, str]  # extra response headers from stages
    notes: dict[str, Any]  # stage-private data (e.g. quota reservations)

    def __init__(self, kind: str, request_id: str, client_ip: str, body: dict[str, Any] | None = None) -> None:
        self.kind = kind
        self.request_id = request_id
        self.client_ip = client_ip
        self.started = time.perf_counter()
        self.body = {} if body is None else body
        self.attempts = []
        self.headers = {}
        self.notes = {}

    @classmethod
    def new(cls, kind: str, request_id: str | None, client_ip: str) -> RequestContext:
        # 128 random bits from the seeded PRNG (reseeded in forked workers): an id, not a secret, and no
        # getrandom() syscall per request
        rid = request_id if request_id and len(request_id) <= 128 else f"{getrandbits(128):032x}"
        return cls(kind, rid, client_ip)

    @property
    def elapsed(self) -> float:
        return time.perf_counter() - self.started

    def mark_first_token(self) -> None:
        if self.ttft is None:
            self.ttft = self.elapsed

    def fail(self, err: GatewayError) -> None:
        self.status = err.status
        self.error_type = getattr(err, "kind", None) or err.code or err.type

    def response_headers(self) -> dict[str, str]:
        h = {"x-request-id": self.request_id}
        if self.provider:
            h["x-gateway-provider"] = self.provider
            h["x-gateway-upstream-model"] = self.upstream_model
        if self.attempts:
            h["x-gateway-attempts"] = str(len(self.attempts))
        if self.fallback:
            h["x-gateway-fallback"] = self.fallback
        if self.route_rule is not None:
            h["x-gateway-route-rule"] = str(self.route_rule)
        h["x-gateway-latency-ms"] = f"{self.elapsed * 1000:.2f}"
        if self.headers:
            h.update(self.headers)
        return h
