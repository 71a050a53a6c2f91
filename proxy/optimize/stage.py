"""Applying an `optimize:` policy to a chat request, before admission, and recording what it saved.

Which policy: the agent's (applied right after the agent is expanded), else the key's (`KeyInfo.optimize`, from
gateway.yaml or the admin API's database, so a key created or changed at runtime counts at its next call), else
the alias's. The pipeline asks `policy_for` on every request; without a policy on the key or (a flag fixed at
startup) on any alias it answers after an attribute read or two. Agents call `apply` with their own.

Saved tokens are the gateway's estimate (proxy/core/tokens.py) of the prompt before and after; their value is
priced at the input price of the alias's first deployment. Rewrite mode's calls to the cheap alias are calls
of their own (their ledger rows name that alias), cached here by a hash of the text, so a prompt repeated (a
long system prompt) is shortened once.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from typing import Any

from proxy.config import GatewayConfig
from proxy.config.agents import OptimizePolicy
from proxy.core.context import RequestContext
from proxy.core.tokens import prompt_tokens, text_tokens
from proxy.observability import metrics as m
from proxy.observability.logs import get_logger
from proxy.optimize.compact import compact_messages
from proxy.providers.settings import Price

# the cheap model's instructions; its answer replaces the text only when it is shorter and not empty
REWRITE_INSTRUCTIONS = (
    "Rewrite the text the user sends so that it is as short as possible while keeping every instruction, "
    "constraint, fact, name, number and code snippet. Do not answer it, do not add anything. "
    "Reply with the rewritten text only.")
REWRITE_TIMEOUT = 30.0
REWRITE_MIN_PART = 64  # tokens: shorter messages of a long prompt are left as they are
REWRITE_MAX_PARTS = 4  # the longest messages of a prompt sent for rewriting, at most
HEADER = "x-gateway-prompt-saved-tokens"
SKIP = "optimize.skip"  # ctx.notes flag: the rewrite calls themselves are not optimised again

# (the request, the cheap alias, its instructions, the text) -> the rewritten text; raises on failure
Ask = Callable[[RequestContext, str, str, str], Awaitable[str]]
log = get_logger("gateway.optimize")


class Optimizer:
    def __init__(self, cfg: GatewayConfig, price: Callable[[str], Price | None], ask: Ask | None = None,
                 cache_entries: int = 10_000) -> None:
        self.alias_policies = {a: p.optimize for a, p in cfg.models.items() if p.optimize is not None}
        self._any_alias = bool(self.alias_policies)  # aliases are fixed at startup: most gateways skip the lookup
        self.price = price
        self.ask = ask
        self.metrics = cfg.metrics.enabled
        self._rewritten: OrderedDict[str, str] = OrderedDict()
        self._cache_entries = cache_entries

    def policy_for(self, ctx: RequestContext) -> OptimizePolicy | None:
        """The pipeline's check (after routing, before admission): the key's policy, else the alias's, when it
        applies. Runs on every request, so the common case (no policy anywhere) is one attribute read and one flag,
        and no coroutine."""
        policy = ctx.key.optimize if ctx.key is not None else None
        if policy is None:
            if not self._any_alias:
                return None
            policy = self.alias_policies.get(ctx.served_alias or ctx.alias)
            if policy is None:
                return None
        # an agent's policy was applied already (the original prompt is recorded); rewrite calls are not redone
        if ctx.kind != "chat" or ctx.prompt_tokens_original is not None or SKIP in ctx.notes:
            return None
        if ctx.native is not None and ctx.native.unsupported is not None:
            return None  # only a deployment speaking the client's API can serve it, as the client sent it
        return policy

    async def for_request(self, ctx: RequestContext) -> None:
        """`policy_for`, then `apply`."""
        policy = self.policy_for(ctx)
        if policy is not None:
            await self.apply(ctx, policy)

    async def apply(self, ctx: RequestContext, policy: OptimizePolicy) -> None:
        if SKIP in ctx.notes:
            return
        messages = ctx.body.get("messages")
        if not isinstance(messages, list):
            return
        ctx.estimated_tokens = 0
        before = prompt_tokens(ctx)
        new = compact_messages(messages)
        if policy.mode == "rewrite" and policy.via and self.ask is not None and before >= policy.min_tokens:
            new = await self._rewrite(ctx, policy.via, new)
        ctx.body = {**ctx.body, "messages": new}
        ctx.estimated_tokens = 0
        after = prompt_tokens(ctx)
        saved = max(0, before - after)
        price = self.price(ctx.served_alias or ctx.alias)
        ctx.prompt_tokens_original, ctx.prompt_tokens_sent = before, after
        ctx.prompt_saved_usd = saved * price.input / 1_000_000 if price is not None else 0.0
        ctx.headers[HEADER] = str(saved)
        if self.metrics and saved:
            m.PROMPT_SAVED_TOKENS.labels(policy.mode).inc(saved)

    async def _rewrite(self, ctx: RequestContext, via: str, messages: list[Any]) -> list[Any]:
        jobs = sorted(((text_tokens(msg["content"]), i) for i, msg in enumerate(messages)
                       if isinstance(msg, dict) and msg.get("role") in ("system", "developer", "user")
                       and isinstance(msg.get("content"), str) and text_tokens(msg["content"]) >= REWRITE_MIN_PART),
                      reverse=True)[:REWRITE_MAX_PARTS]
        if not jobs:
            return messages
        shorter = await asyncio.gather(*(self._shorten(ctx, via, messages[i]["content"]) for _, i in jobs))
        out = list(messages)
        for (_, i), text in zip(jobs, shorter, strict=True):
            if text is not None:
                out[i] = {**out[i], "content": text}
        return out

    async def _shorten(self, ctx: RequestContext, via: str, text: str) -> str | None:
        """The shorter text, or None (the original stays) on any failure or an answer that is not shorter."""
        h = hashlib.sha256(f"{via}\0{text}".encode()).hexdigest()
        if (hit := self._rewritten.get(h)) is not None:
            self._rewritten.move_to_end(h)
            return hit
        assert self.ask is not None
        try:
            out = (await asyncio.wait_for(self.ask(ctx, via, REWRITE_INSTRUCTIONS, text), REWRITE_TIMEOUT)).strip()
        except Exception as err:  # whatever went wrong, the original prompt is sent
            log.warning("prompt_rewrite_failed", via=via, request_id=ctx.request_id,
                        error=f"{type(err).__name__}: {getattr(err, 'message', err)}")
            return None
        if not out or len(out) >= len(text):
            return None
        self._rewritten[h] = out
        if len(self._rewritten) > self._cache_entries:
            self._rewritten.popitem(last=False)
        return out
