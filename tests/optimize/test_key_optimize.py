"""`optimize:` on keys created through the admin API, through the real server and the official `openai` SDK:
a key created with a policy is optimised (upstream body, saved-tokens header, ledger row), PATCH changes or
removes the policy for the very next call (on this replica at once, on another through the key cache's
invalidation); a gateway.yaml without any `optimize:` still honours a key's; and the hook's cheap path."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

import aiohttp
import pytest

from proxy.auth.authenticator import key_from_config
from proxy.auth.keystore import key_info
from proxy.config import parse_config
from proxy.config.access import KeyConfig
from proxy.config.agents import OptimizePolicy
from proxy.core.context import RequestContext
from proxy.core.identity import KeyInfo
from proxy.optimize import Optimizer
from tests.admission.conftest import ADMIN_KEY
from tests.conftest import GatewayFactory, GatewayServer, MockUpstream, base_config
from tests.http.admin.test_keys import call
from tests.optimize.test_optimize_http import LONG, SPACEY, sent

COMPACTED = [{"role": "system", "content": "You are terse."},
             {"role": "user", "content": "Explain this:\n```\nx  =  1\n```"}]
INPUT_PRICE = 10.0  # USD per million input tokens of up/mock-1


def config(mock_url: str, **overrides: Any) -> dict[str, Any]:
    """No `optimize:` anywhere in gateway.yaml: a database key's policy must work on its own."""
    cfg = base_config(mock_url, admin={"key": ADMIN_KEY}, **overrides)
    cfg["providers"]["cheap"] = {"type": "mock", "mock": {"reply": "lorem", "reply_tokens": 5}}
    cfg["models"]["cheap"] = {"route": [{"provider": "cheap", "model": "cheap-1"}]}
    cfg["pricing"] = {"up/mock-1": {"input": INPUT_PRICE, "output": 10}}
    return cfg


async def last_row(gw: GatewayServer, key_id: str) -> dict[str, Any]:
    await gw.gateway.ledger_writer.flush()
    rows = await gw.gateway.ledger_store.recent_usage(key_id, limit=1)
    assert rows, "no ledger row for the call"
    return rows[0]


async def test_admin_key_optimize_end_to_end(gateway_factory: GatewayFactory, mock_upstream: MockUpstream,
                                             http: aiohttp.ClientSession) -> None:
    gw = await gateway_factory(config(mock_upstream.url))
    status, created, text = await call(http, gw, "POST", "/admin/keys",
                                       {"name": "tidy", "optimize": {"mode": "compact"}})
    assert status == 201, text
    kid = created["id"]
    assert created["optimize"] == {"mode": "compact", "min_tokens": 500}
    status, got, _ = await call(http, gw, "GET", f"/admin/keys/{kid}")
    assert status == 200 and got["optimize"] == {"mode": "compact", "min_tokens": 500}
    status, listed, _ = await call(http, gw, "GET", "/admin/keys")
    by_id = {k["id"]: k for k in listed["data"]}
    assert by_id[kid]["optimize"] == {"mode": "compact", "min_tokens": 500} and by_id["cfg:dev"]["optimize"] is None

    client = gw.openai(created["key"])
    r = await client.chat.completions.with_raw_response.create(model="up", messages=SPACEY)
    assert r.parse().choices[0].message.content
    assert sent(mock_upstream) == COMPACTED
    saved = int(r.headers["x-gateway-prompt-saved-tokens"])
    assert saved > 0
    row = await last_row(gw, kid)
    assert row["prompt_tokens_original"] - row["prompt_tokens_sent"] == saved
    assert row["prompt_saved_usd"] == pytest.approx(saved * INPUT_PRICE / 1e6) and row["prompt_saved_usd"] > 0
    # the gateway.yaml key (no policy) on the same alias: sent as it came
    r = await gw.openai().chat.completions.with_raw_response.create(model="up", messages=SPACEY)
    assert sent(mock_upstream) == SPACEY and "x-gateway-prompt-saved-tokens" not in r.headers

    # PATCH to null: the very next call goes out unchanged, and its row records no optimisation
    status, patched, text = await call(http, gw, "PATCH", f"/admin/keys/{kid}", {"optimize": None})
    assert status == 200 and patched["optimize"] is None, text
    r = await client.chat.completions.with_raw_response.create(model="up", messages=SPACEY)
    assert sent(mock_upstream) == SPACEY and "x-gateway-prompt-saved-tokens" not in r.headers
    row = await last_row(gw, kid)
    assert row["prompt_tokens_original"] is None and row["prompt_saved_usd"] is None

    # PATCH to rewrite through the cheap alias: the next long prompt is shortened by it
    status, patched, text = await call(http, gw, "PATCH", f"/admin/keys/{kid}",
                                       {"optimize": {"mode": "rewrite", "via": "cheap", "min_tokens": 100}})
    assert status == 200 and patched["optimize"] == {"mode": "rewrite", "via": "cheap", "min_tokens": 100}, text
    r = await client.chat.completions.with_raw_response.create(model="up", messages=[{"role": "user",
                                                                                      "content": LONG}])
    assert len(sent(mock_upstream)[0]["content"].split()) == 5  # the cheap model's answer replaced it
    assert int(r.headers["x-gateway-prompt-saved-tokens"]) > 400

    status, audit, _ = await call(http, gw, "GET", f"/admin/audit?target={kid}")
    changes = [(a["before"]["optimize"], a["after"]["optimize"]) for a in reversed(audit["data"])
               if a["action"] == "key.update"]
    assert changes == [({"mode": "compact", "min_tokens": 500}, None),
                       (None, {"mode": "rewrite", "via": "cheap", "min_tokens": 100})]


async def test_patch_reaches_another_replica(gateway_factory: GatewayFactory, mock_upstream: MockUpstream,
                                             http: aiohttp.ClientSession, pg_url: str, redis_url: str) -> None:
    """Two replicas on one database and Redis: a key cached by b with its policy is seen without it once a
    removes it (KeyStore.changed publishes the key id; b drops its entry)."""
    cfg = config(mock_upstream.url, database={"url": pg_url}, redis={"url": redis_url})
    a = await gateway_factory(cfg)
    b = await gateway_factory(cfg)
    _, created, _ = await call(http, a, "POST", "/admin/keys", {"name": "shared", "optimize": {"mode": "compact"}})
    client = b.openai(created["key"])
    await client.chat.completions.create(model="up", messages=SPACEY)
    assert sent(mock_upstream) == COMPACTED  # b knows the key, with its policy, from its cache now
    assert (await call(http, a, "PATCH", f"/admin/keys/{created['id']}", {"optimize": None}))[0] == 200
    for _ in range(40):
        await client.chat.completions.create(model="up", messages=SPACEY)
        if sent(mock_upstream) == SPACEY:
            break
        await asyncio.sleep(0.1)
    else:
        raise AssertionError("replica b still compacts for a key whose policy was removed")


@pytest.mark.parametrize(("optimize", "field"), [
    ({"mode": "shrink"}, "optimize.mode"),
    ({"mode": "rewrite", "via": "nosuch"}, "optimize.via"),
    ({"mode": "rewrite"}, "optimize"),  # rewrite needs a via
    ({"mode": "compact", "min_tokens": 0}, "optimize.min_tokens"),
    ({"mode": "compact", "level": 3}, "optimize.level"),
    ("compact", "optimize"),
])
async def test_bad_optimize_is_422_naming_the_field(gateway_factory: GatewayFactory, mock_upstream: MockUpstream,
                                                    http: aiohttp.ClientSession, optimize: Any, field: str) -> None:
    gw = await gateway_factory(config(mock_upstream.url))
    status, data, text = await call(http, gw, "POST", "/admin/keys", {"name": "bad", "optimize": optimize})
    assert status == 422 and data["error"]["param"] == field, text
    _, created, _ = await call(http, gw, "POST", "/admin/keys", {"name": "good"})
    status, data, text = await call(http, gw, "PATCH", f"/admin/keys/{created['id']}", {"optimize": optimize})
    assert status == 422 and data["error"]["param"] == field, text
    status, got, _ = await call(http, gw, "GET", f"/admin/keys/{created['id']}")
    assert got["optimize"] is None  # nothing stored by the refused change


# ---------------------------------------------------------------- the hook, without a server
COMPACT = OptimizePolicy(mode="compact")
REWRITE = OptimizePolicy(mode="rewrite", via="cheap")


def optimizer(alias_policy: dict[str, Any] | None = None) -> tuple[Optimizer, list[tuple[str, OptimizePolicy]]]:
    raw = config("http://127.0.0.1:1")
    if alias_policy is not None:
        raw["models"]["up"]["optimize"] = alias_policy
    opt = Optimizer(parse_config(raw, env={}), lambda _: None)
    applied: list[tuple[str, OptimizePolicy]] = []

    async def record(ctx: RequestContext, policy: OptimizePolicy) -> None:
        applied.append((ctx.alias, policy))

    opt.apply = record  # type: ignore[method-assign]
    return opt, applied


def chat_ctx(key: KeyInfo | None, alias: str = "up") -> RequestContext:
    ctx = RequestContext("chat", "r1", "127.0.0.1", {"model": alias, "messages": SPACEY})
    ctx.key, ctx.alias = key, alias
    return ctx


async def test_precedence_key_over_alias_for_every_key_source() -> None:
    opt, applied = optimizer({"mode": "compact"})
    db_key = key_info({"id": "key_1", "name": "db", "optimize": {"mode": "rewrite", "via": "cheap"}})
    _, cfg_key = key_from_config(KeyConfig(name="cfg", key="sk-x", optimize=REWRITE))
    plain = KeyInfo(id="key_2", name="plain", source="db")
    for key in (db_key, cfg_key):
        assert key.optimize == REWRITE
        await opt.for_request(chat_ctx(key))
    await opt.for_request(chat_ctx(plain))  # no key policy: the alias's
    await opt.for_request(chat_ctx(plain, alias="demo"))  # neither: nothing
    assert applied == [("up", REWRITE), ("up", REWRITE), ("up", COMPACT)]
    done = chat_ctx(db_key)
    done.prompt_tokens_original = 10  # an agent's policy was applied already: it wins
    await opt.for_request(done)
    skipped = chat_ctx(db_key)
    skipped.kind = "embeddings"
    await opt.for_request(skipped)
    assert len(applied) == 3


async def test_no_policy_costs_one_attribute_read() -> None:
    """No alias has a policy and the key has none: only `ctx.key.optimize` is read (a stand-in context with
    nothing else on it would raise on any further access)."""
    opt, applied = optimizer()
    await opt.for_request(SimpleNamespace(key=KeyInfo(id="key_3", name="k")))  # type: ignore[arg-type]
    await opt.for_request(SimpleNamespace(key=None))  # type: ignore[arg-type]
    assert applied == []
    with pytest.raises(AttributeError):  # the stand-in is strict: the test can tell a further read
        await opt.for_request(SimpleNamespace(key=KeyInfo(id="key_4", name="k", optimize=COMPACT)))  # type: ignore[arg-type]
