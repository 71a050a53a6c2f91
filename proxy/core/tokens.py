"""The one token estimator: about 4 characters a token, for limits, budgets, routing rules and
upstreams that report no usage (before a call nothing better is known without a tokenizer)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import orjson

if TYPE_CHECKING:
    from proxy.core.context import RequestContext


def text_tokens(text: str) -> int:
    """Tokens in a piece of text (an answer, a prompt, an embedding input)."""
    return (len(text) + 3) // 4


def prompt_tokens(ctx: RequestContext) -> int:
    """The request's prompt size, computed once per request and kept on ctx for every later stage.

    Chat: each string message's text plus a little for role and framing; parts and tool calls are
    measured as JSON. Embeddings: the input's text, or its JSON for arrays."""
    if ctx.estimated_tokens:
        return ctx.estimated_tokens
    body = ctx.body
    if ctx.kind == "chat":
        chars = 0
        for msg in body.get("messages") or ():
            content = msg.get("content") if isinstance(msg, dict) else None
            if isinstance(content, str):
                chars += len(content) + 16
            else:
                chars += len(_json(msg))
    else:
        payload = body.get("input")
        chars = len(payload) if isinstance(payload, str) else len(_json(payload)) if payload is not None else 0
    ctx.estimated_tokens = max(1, chars // 4)
    return ctx.estimated_tokens


def completion_budget(body: dict[str, Any]) -> int:
    """The most completion tokens the request allows (0 when it sets no limit)."""
    out = body.get("max_completion_tokens") or body.get("max_tokens") or 0
    return out if isinstance(out, int) else 0


def _json(value: Any) -> bytes:
    try:
        return orjson.dumps(value)
    except TypeError:
        return b""
