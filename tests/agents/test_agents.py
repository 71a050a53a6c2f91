"""Agents as versioned virtual models, through the real server: the admin API (create, PATCH = new immutable
version, versions, rollback, delete, config agents read-only, 422 naming the field), and calls as
`model: "agent/<name>[@v]"` from the official `openai` and `anthropic` SDKs, with template variables in
`metadata` or the `x-gateway-vars` header; usage attributed to the agent and version (ledger, metrics)."""

from __future__ import annotations

from typing import Any

import aiohttp
import anthropic
import openai
import orjson
import pytest

from tests.admission.conftest import ADMIN_KEY
from tests.conftest import DEV_KEY, GatewayFactory, GatewayServer, MockUpstream, base_config
from tests.http.admin.test_keys import call

LIMITED_KEY = "sk-test-limited"
DEMO_ONLY_KEY = "sk-test-demo-only"
REVIEW = {"name": "review", "description": "code review", "model": "up",
          "system": "Review {{ language }} code, focus on {{ focus }}.",
          "variables": {"language": None, "focus": "bugs"}, "params": {"temperature": 0.1, "max_tokens": 50}}


def agents_config(mock_url: str, **overrides: Any) -> dict[str, Any]:
    cfg = base_config(mock_url, admin={"key": ADMIN_KEY}, **overrides)
    cfg["models"]["other"] = {"route": [{"provider": "up", "model": "mock-2"}]}
    cfg["keys"].append({"name": "limited", "key": LIMITED_KEY, "models": ["demo", "agent/*"]})
    cfg["keys"].append({"name": "demo-only", "key": DEMO_ONLY_KEY, "models": ["demo"]})
    cfg.setdefault("agents", {})["fixed"] = {"model": "demo", "system": "You are fixed.", "variables": {}}
    return cfg


@pytest.fixture
async def gw(gateway_factory: GatewayFactory, mock_upstream: MockUpstream) -> GatewayServer:
    return await gateway_factory(agents_config(mock_upstream.url))


def last_body(mock: MockUpstream) -> dict[str, Any]:
    return mock.state.requests[-1]["body"]  # type: ignore[no-any-return]


async def create(http: aiohttp.ClientSession, gw: GatewayServer, body: dict[str, Any]) -> dict[str, Any]:
    status, data, text = await call(http, gw, "POST", "/admin/agents", body)
    assert status == 201, text
    return data  # type: ignore[no-any-return]


async def test_versions_patch_rollback_and_calls_by_version(gw: GatewayServer, mock_upstream: MockUpstream,
                                                            http: aiohttp.ClientSession) -> None:
    v1 = await create(http, gw, REVIEW)
    assert (v1["version"], v1["live_version"], v1["model"]) == (1, 1, "up")
    client = gw.openai()
    r = await client.chat.completions.create(model="agent/review", metadata={"language": "Rust"},
                                             messages=[{"role": "user", "content": "fn main() {}"}])
    assert r.choices[0].message.content
    sent = last_body(mock_upstream)
    assert sent["messages"][0] == {"role": "system", "content": "Review Rust code, focus on bugs."}
    assert sent["messages"][1]["content"] == "fn main() {}"
    assert sent["temperature"] == 0.1 and sent["max_tokens"] == 50
    assert "metadata" not in sent  # the template variables are the gateway's, not the upstream's

    status, v2, text = await call(http, gw, "PATCH", "/admin/agents/review",
                                  {"system": "Be terse about {{ language }}.", "params": {"temperature": 0.5}})
    assert status == 200, text
    assert (v2["version"], v2["description"]) == (2, "code review")  # unchanged fields carry over
    await client.chat.completions.create(model="agent/review", metadata={"language": "Go"},
                                         messages=[{"role": "user", "content": "x"}])
    assert last_body(mock_upstream)["messages"][0]["content"] == "Be terse about Go."
    # a pinned version is immutable and still callable
    await client.chat.completions.create(model="agent/review@1", metadata={"language": "Go"},
                                         messages=[{"role": "user", "content": "x"}])
    assert last_body(mock_upstream)["messages"][0]["content"] == "Review Go code, focus on bugs."

    status, versions, _ = await call(http, gw, "GET", "/admin/agents/review/versions")
    assert status == 200 and [v["version"] for v in versions["data"]] == [1, 2]
    assert versions["live_version"] == 2 and [v["live"] for v in versions["data"]] == [False, True]
    status, rolled, text = await call(http, gw, "POST", "/admin/agents/review/rollback", {"version": 1})
    assert status == 200 and rolled["version"] == 1 and rolled["latest_version"] == 2, text
    await client.chat.completions.create(model="agent/review", metadata={"language": "C"},
                                         messages=[{"role": "user", "content": "x"}])
    assert last_body(mock_upstream)["messages"][0]["content"] == "Review C code, focus on bugs."
    status, v3, _ = await call(http, gw, "PATCH", "/admin/agents/review", {"variables": {"language": "Python", "focus": "bugs"}})
    assert (status, v3["version"], v3["system"]) == (200, 3, REVIEW["system"])  # built on the live version 1

    # usage is attributed to the agent and version
    status, usage, _ = await call(http, gw, "GET", "/admin/usage?group_by=agent")
    assert status == 200
    assert {g["agent"]: g["calls"] for g in usage["data"]}.get("review") == 4
    rows = await gw.gateway.ledger_store.recent_usage(limit=10)
    assert sorted({(r["agent"], r["agent_version"], r["alias"]) for r in rows}) == [
        ("review", 1, "up"), ("review", 2, "up")]
    text = await (await http.get(gw.url + "/metrics")).text()
    assert 'gateway_agent_requests_total{agent="review",status_class="2xx",version="1"}' in text
    assert 'gateway_agent_requests_total{agent="review",status_class="2xx",version="2"}' in text

    status, listed, _ = await call(http, gw, "GET", "/admin/agents")
    assert {a["name"]: a["read_only"] for a in listed["data"]} == {"fixed": True, "review": False}
    status, deleted, _ = await call(http, gw, "DELETE", "/admin/agents/review")
    assert status == 200 and deleted["deleted"] is True
    with pytest.raises(openai.NotFoundError) as err:
        await client.chat.completions.create(model="agent/review", messages=[{"role": "user", "content": "x"}])
    assert err.value.body["code"] == "agent_not_found"  # type: ignore[index]
    audit = (await call(http, gw, "GET", "/admin/audit?target=agent:review"))[1]["data"]
    assert sorted(a["action"] for a in audit) == [
        "agent.create", "agent.delete", "agent.rollback", "agent.update", "agent.update"]


async def test_variables_header_stream_and_anthropic_sdk(gw: GatewayServer, mock_upstream: MockUpstream,
                                                         http: aiohttp.ClientSession) -> None:
    await create(http, gw, REVIEW)
    client = gw.openai(default_headers={"x-gateway-vars": orjson.dumps({"language": "Zig", "focus": "style"}).decode()})
    chunks = [c async for c in await client.chat.completions.create(
        model="agent/review", stream=True, messages=[{"role": "user", "content": "hi"}])]
    assert chunks
    assert last_body(mock_upstream)["messages"][0]["content"] == "Review Zig code, focus on style."

    ac = anthropic.AsyncAnthropic(base_url=gw.url, api_key=DEV_KEY, max_retries=0)
    msg = await ac.messages.create(model="agent/review", max_tokens=20, metadata={"language": "Ada"},  # type: ignore[typeddict-unknown-key]
                                   messages=[{"role": "user", "content": "procedure X"}])
    assert msg.content[0].type == "text"
    assert last_body(mock_upstream)["messages"][0]["content"] == "Review Ada code, focus on bugs."
    with pytest.raises(anthropic.BadRequestError) as err:
        await ac.messages.create(model="agent/review", max_tokens=20, messages=[{"role": "user", "content": "x"}])
    assert "language" in str(err.value)


async def test_config_agents_and_the_library_file(gateway_factory: GatewayFactory, mock_upstream: MockUpstream,
                                                  http: aiohttp.ClientSession, tmp_path: Any) -> None:
    cfg = agents_config(mock_upstream.url, agents_file="config/agents.example.yaml")
    gw = await gateway_factory(cfg)
    client = gw.openai()
    r = await client.chat.completions.create(model="agent/translate", metadata={"target_language": "French"},
                                             messages=[{"role": "user", "content": "bonjour"}])
    assert r.choices[0].message.content == "bonjour"  # the mock echoes the user's message
    for name in ("code-review", "summarize", "sql-helper", "test-writer", "docs-writer"):
        assert name in gw.gateway.agents.config_agents
    r = await client.chat.completions.create(model="agent/fixed@1", messages=[{"role": "user", "content": "x"}])
    assert r.choices[0].message.content == "x"
    status, data, _ = await call(http, gw, "PATCH", "/admin/agents/fixed", {"description": "x"})
    assert (status, data["error"]["code"]) == (409, "read_only_agent")
    with pytest.raises(openai.NotFoundError):
        await client.chat.completions.create(model="agent/fixed@2", messages=[{"role": "user", "content": "x"}])


async def test_bad_input(gw: GatewayServer, http: aiohttp.ClientSession) -> None:
    async def refused(body: dict[str, Any], field: str) -> str:
        status, data, text = await call(http, gw, "POST", "/admin/agents", body)
        assert status == 422, text
        assert data["error"]["param"] == field, text
        return str(data["error"]["message"])

    assert "__class__" in await refused({**REVIEW, "system": "{{ ''.__class__ }}"}, "system")
    assert "undeclared" in await refused({**REVIEW, "system": "{{ secret }}"}, "system")
    assert "syntax" in await refused({**REVIEW, "system": "{{ oops"}, "system")
    assert "loops" in await refused({**REVIEW, "system": "{% for i in range(9) %}x{% endfor %}"}, "system")
    await refused({**REVIEW, "model": "nope"}, "model")
    await refused({**REVIEW, "params": {"messages": []}}, "params")
    await refused({**REVIEW, "name": "Bad Name"}, "name")
    await create(http, gw, REVIEW)
    status, data, _ = await call(http, gw, "POST", "/admin/agents", REVIEW)
    assert (status, data["error"]["code"]) == (409, "duplicate_agent")
    status, data, _ = await call(http, gw, "PATCH", "/admin/agents/review", {"system": "{{ x.__class__ }}"})
    assert (status, data["error"]["param"]) == (422, "system")
    status, data, _ = await call(http, gw, "POST", "/admin/agents/review/rollback", {"version": 7})
    assert (status, data["error"]["code"]) == (404, "agent_version_not_found")
    status, data, _ = await call(http, gw, "GET", "/admin/agents/ghost")
    assert (status, data["error"]["code"]) == (404, "agent_not_found")
    status, _, _ = await call(http, gw, "POST", "/admin/agents", REVIEW, key=DEV_KEY)
    assert status == 403

    client = gw.openai()
    with pytest.raises(openai.NotFoundError) as nf:
        await client.chat.completions.create(model="agent/ghost", messages=[{"role": "user", "content": "x"}])
    assert nf.value.status_code == 404
    with pytest.raises(openai.BadRequestError) as missing:
        await client.chat.completions.create(model="agent/review", messages=[{"role": "user", "content": "x"}])
    assert missing.value.body["code"] == "missing_variables" and "language" in missing.value.message  # type: ignore[index]
    with pytest.raises(openai.BadRequestError) as bad_header:
        await client.chat.completions.create(model="agent/review", messages=[{"role": "user", "content": "x"}],
                                             extra_headers={"x-gateway-vars": "not json"})
    assert bad_header.value.body["param"] == "x-gateway-vars"  # type: ignore[index]


async def test_a_key_reaches_no_alias_through_an_agent_it_may_not_use(gw: GatewayServer,
                                                                       http: aiohttp.ClientSession) -> None:
    await create(http, gw, {**REVIEW, "name": "on-up"})  # alias `up`: not in the limited key's globs
    await create(http, gw, {**REVIEW, "name": "on-demo", "model": "demo"})
    limited = gw.openai(LIMITED_KEY)
    with pytest.raises(openai.PermissionDeniedError) as err:
        await limited.chat.completions.create(model="agent/on-up", metadata={"language": "Go"},
                                              messages=[{"role": "user", "content": "x"}])
    assert "'up'" in err.value.message
    r = await limited.chat.completions.create(model="agent/on-demo", metadata={"language": "Go"},
                                              messages=[{"role": "user", "content": "x"}])
    assert r.choices[0].message.content == "x"
    # and a key whose globs do not match agent/<name> cannot call it, though it may use the alias
    with pytest.raises(openai.PermissionDeniedError) as err:
        await gw.openai(DEMO_ONLY_KEY).chat.completions.create(
            model="agent/on-demo", metadata={"language": "Go"}, messages=[{"role": "user", "content": "x"}])
    assert "agent 'on-demo'" in err.value.message


async def test_models_list_and_count_tokens_know_agents(gw: GatewayServer, http: aiohttp.ClientSession) -> None:
    await create(http, gw, REVIEW)  # on alias `up`: the limited key may use `agent/*` but not `up`
    listed = {m.id: m.owned_by for m in (await gw.openai().models.list()).data}
    assert listed["agent/review"] == listed["agent/fixed"] == "gateway-agent" and "up" in listed
    limited = {m.id for m in (await gw.openai(key=LIMITED_KEY).models.list()).data}
    assert "agent/fixed" in limited and "agent/review" not in limited  # its alias is not the key's
    assert "agent/review" not in {m.id for m in (await gw.openai(key=DEMO_ONLY_KEY).models.list()).data}
    assert (await gw.openai().models.retrieve("agent/review@1")).id == "agent/review@1"
    with pytest.raises(openai.NotFoundError):
        await gw.openai().models.retrieve("agent/nope")
    with pytest.raises(openai.NotFoundError):
        await gw.openai(key=LIMITED_KEY).models.retrieve("agent/review")
    # count_tokens counts the agent's rendered system prompt too; a missing variable is the same 400 as a call
    c = anthropic.AsyncAnthropic(base_url=gw.url, api_key=DEV_KEY, max_retries=0)
    ask = [{"role": "user", "content": "fn main() {}"}]
    plain = await c.messages.count_tokens(model="up", messages=ask)  # type: ignore[arg-type]
    with_agent = await c.messages.count_tokens(model="agent/review", messages=ask,  # type: ignore[arg-type]
                                               extra_headers={"x-gateway-vars": '{"language": "Rust"}'})
    assert with_agent.input_tokens > plain.input_tokens
    with pytest.raises(anthropic.BadRequestError, match="language"):
        await c.messages.count_tokens(model="agent/review", messages=ask)  # type: ignore[arg-type]
