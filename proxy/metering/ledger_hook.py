"""The metering hook that turns a finished request into one usage-ledger row (queued, never awaited)."""

from __future__ import annotations

from proxy.core.context import RequestContext
from proxy.ledger import LedgerWriter, UsageRow
from proxy.metering.meter import FinishHook


def usage_row(ctx: RequestContext) -> UsageRow:
    key = ctx.key
    u = ctx.usage
    hit = ctx.cache_status == "hit"
    return UsageRow(
        request_id=ctx.request_id,
        key_id=key.id if key else None, key_name=key.name if key else None,
        user=key.user if key else None, team=key.team if key else None,
        alias=ctx.served_alias or ctx.alias, provider=ctx.provider, upstream_model=ctx.upstream_model,
        prompt_tokens=u.prompt_tokens if u else 0, completion_tokens=u.completion_tokens if u else 0,
        cached_tokens=u.cached_tokens if u else 0,
        cost_usd=ctx.cost_usd, saved_usd=ctx.saved_usd,
        latency_ms=round(ctx.elapsed * 1000, 3), ttft_ms=round(ctx.ttft * 1000, 3) if ctx.ttft is not None else None,
        status=ctx.status, error_type=ctx.error_type, cache_hit=hit, stream=ctx.stream,
        fallback=ctx.fallback.split("->", 1)[0] if ctx.fallback else None,
        attempts=len(ctx.attempts) or (0 if hit else 1), client_ip=ctx.client_ip or None,
        agent=ctx.agent, agent_version=ctx.agent_version, chain_id=ctx.chain_id,
        prompt_tokens_original=ctx.prompt_tokens_original, prompt_tokens_sent=ctx.prompt_tokens_sent,
        prompt_saved_usd=ctx.prompt_saved_usd,
    )


def ledger_hook(writer: LedgerWriter) -> FinishHook:
    def record(ctx: RequestContext) -> None:
        # calls without a key (401s) are not usage: counting them would let anyone fill the ledger
        if ctx.key is not None:
            writer.submit(usage_row(ctx))

    return record
