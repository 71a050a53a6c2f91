"""Prompt optimisation through the real server: off unless configured; `compact` per key, alias or agent;
`rewrite` through a cheap alias (cached by prompt hash, falling back to the original on failure); the ledger,
/admin/usage and `x-gateway-prompt-saved-tokens` report what was saved."""

from __future__ import annotations

from typing import Any

import aiohttp
import pytest

from tests.admission.conftest import ADMIN_KEY
from tests.conftest import GatewayFactory, GatewayServer, MockUpstream, base_config
from tests.http.admin.test_keys import call

COMPACT_KEY = "sk-test-compact"
REWRITE_KEY = "sk-test-rewrite"
FAILING_KEY = "sk-test-failing"
SPACEY = [{"role": "system", "content": "You   are   terse.   \n\n\n\n"}, {"role": "system", "content": "You are terse."},
          {"role": "user", "content": "Explain    this:\n```\nx  =  1\n```   "}]
LONG = "Please    read the following   carefully. " + "word " * 400


def config(mock_url: str) -> dict[str, Any]:
    cfg = base_config(mock_url, admin={"key": ADMIN_KEY})
    cfg["providers"]["cheap"] = {"type": "mock", "mock": {"reply": "lorem", "reply_tokens": 5}}
    cfg["providers"]["down"] = {"type": "mock", "mock": {"error_status": 500}}
    cfg["models"]["cheap"] = {"route": [{"provider": "cheap", "model": "cheap-1"}]}
    cfg["models"]["down"] = {"route": [{"provider": "down", "model": "down-1"}], "retry": {"attempts": 1}}
    cfg["models"]["tidy"] = {"route": [{"provider": "up", "model": "mock-1"}], "optimize": {"mode": "compact"}}
    cfg["pricing"] = {"up/mock-1": {"input": 10, "output": 10}}
    cfg["keys"] += [{"name": "compact", "key": COMPACT_KEY, "optimize": {"mode": "compact"}},
                    {"name": "rewrite", "key": REWRITE_KEY, "optimize": {"mode": "rewrite", "via": "cheap",
                                                                          "min_tokens": 100}},
                    {"name": "failing", "key": FAILING_KEY, "optimize": {"mode": "rewrite", "via": "down",
                                                                          "min_tokens": 100}}]
    return cfg


@pytest.fixture
async def gw(gateway_factory: GatewayFactory, mock_upstream: MockUpstream) -> GatewayServer:
    return await gateway_factory(config(mock_upstream.url))


def sent(mock: MockUpstream) -> list[dict[str, Any]]:
    return mock.state.requests[-1]["body"]["messages"]  # type: ignore[no-any-return]


async def test_off_unless_configured(gateway_factory: GatewayFactory, mock_upstream: MockUpstream) -> None:
    gw = await gateway_factory(base_config(mock_upstream.url))
    # the hook is there (an admin-API key may take a policy later) but, without one, leaves the prompt alone
    assert gw.gateway.pipeline.optimizer is not None
    r = await gw.openai().chat.completions.with_raw_response.create(model="up", messages=SPACEY)
    assert "x-gateway-prompt-saved-tokens" not in r.headers
    assert sent(mock_upstream) == SPACEY


async def test_compact_per_key_alias_and_agent(gw: GatewayServer, mock_upstream: MockUpstream,
                                               http: aiohttp.ClientSession) -> None:
    compacted = [{"role": "system", "content": "You are terse."},
                 {"role": "user", "content": "Explain this:\n```\nx  =  1\n```"}]
    r = await gw.openai(COMPACT_KEY).chat.completions.with_raw_response.create(model="up", messages=SPACEY)
    assert sent(mock_upstream) == compacted
    saved = int(r.headers["x-gateway-prompt-saved-tokens"])
    assert saved > 0
    r = await gw.openai().chat.completions.with_raw_response.create(model="tidy", messages=SPACEY)  # the alias's
    assert sent(mock_upstream) == compacted and int(r.headers["x-gateway-prompt-saved-tokens"]) == saved
    r = await gw.openai().chat.completions.with_raw_response.create(model="up", messages=SPACEY)  # no policy
    assert sent(mock_upstream) == SPACEY and "x-gateway-prompt-saved-tokens" not in r.headers

    status, _, text = await call(http, gw, "POST", "/admin/agents",
                                 {"name": "terse", "model": "up", "system": "Be   brief.  ",
                                  "optimize": {"mode": "compact"}})
    assert status == 201, text
    await gw.openai().chat.completions.create(model="agent/terse", messages=SPACEY)
    assert sent(mock_upstream) == [{"role": "system", "content": "Be brief."}, *compacted]

    await gw.gateway.ledger_writer.flush()
    rows = [r for r in await gw.gateway.ledger_store.recent_usage(limit=10) if r["prompt_tokens_original"]]
    assert len(rows) == 3
    for row in rows:
        assert row["prompt_tokens_original"] - row["prompt_tokens_sent"] > 0
        assert row["prompt_saved_usd"] == pytest.approx(
            (row["prompt_tokens_original"] - row["prompt_tokens_sent"]) * 10 / 1e6)
    status, usage, _ = await call(http, gw, "GET", "/admin/usage")
    assert usage["totals"]["prompt_saved_tokens"] == sum(
        r["prompt_tokens_original"] - r["prompt_tokens_sent"] for r in rows)
    assert usage["totals"]["prompt_saved_usd"] > 0


async def test_rewrite_through_a_cheap_alias_cached_and_failing_safe(gw: GatewayServer, mock_upstream: MockUpstream,
                                                                      http: aiohttp.ClientSession) -> None:
    messages = [{"role": "user", "content": LONG}]
    client = gw.openai(REWRITE_KEY)
    r = await client.chat.completions.with_raw_response.create(model="up", messages=messages)
    shortened = sent(mock_upstream)[0]["content"]
    assert len(shortened.split()) == 5  # the cheap model's (lorem) answer replaced the long prompt
    assert int(r.headers["x-gateway-prompt-saved-tokens"]) > 400
    await client.chat.completions.create(model="up", messages=messages)
    assert sent(mock_upstream)[0]["content"] == shortened
    await gw.gateway.ledger_writer.flush()
    rows = await gw.gateway.ledger_store.recent_usage(limit=20)
    assert sum(1 for row in rows if row["alias"] == "cheap") == 1  # the second call reused the rewrite
    # short prompts (under min_tokens) are only compacted
    await client.chat.completions.create(model="up", messages=[{"role": "user", "content": "short   one"}])
    assert sent(mock_upstream)[0]["content"] == "short one"

    # a failing cheap model: the (compacted) original goes out and the call succeeds
    r = await gw.openai(FAILING_KEY).chat.completions.with_raw_response.create(model="up", messages=messages)
    assert r.parse().choices[0].message.content
    assert sent(mock_upstream)[0]["content"] == LONG.replace("    ", " ").replace("   ", " ").strip()
