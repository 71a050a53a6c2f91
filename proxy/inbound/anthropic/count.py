"""`POST /v1/messages/count_tokens` (`anthropic.types.MessageCountTokensParams`) -> the gateway's estimate."""

from __future__ import annotations

import orjson

from proxy.core.context import RequestContext
from proxy.core.tokens import prompt_tokens, text_tokens
from proxy.inbound.anthropic.request import invalid, to_chat
from proxy.inbound.base import JSON

COUNTED = frozenset({"model", "messages", "system", "tools", "tool_choice", "thinking"})


def estimate_tokens(body: JSON) -> int:
    """Validated as the Messages request is (its fields but `max_tokens`, sampling and `stream`); the prompt's
    tokens by the one estimator, with the tools' definitions, which the model reads too."""
    return estimate(RequestContext("chat", "", "", counted_body(body)))


def counted_body(body: JSON) -> JSON:
    """The request to count, validated and as chat completions (an agent's template is applied to this)."""
    for k in body:
        if k not in COUNTED:
            raise invalid("Extra inputs are not permitted", k)
    return to_chat({**body, "max_tokens": 1})


def estimate(ctx: RequestContext) -> int:
    tools = ctx.body.get("tools")
    ctx.estimated_tokens = 0
    return prompt_tokens(ctx) + (text_tokens(orjson.dumps(tools).decode()) if tools else 0)
