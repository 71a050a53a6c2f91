"""Gateway responses conform to OpenAI's official OpenAPI spec (vendored: tests/specs/openai-openapi.yaml).

Every provider type is translated into OpenAI shapes, so each one's answers are validated against
`CreateChatCompletionResponse`, `CreateChatCompletionStreamResponse`, `CreateEmbeddingResponse`,
`ListModelsResponse` and `ErrorResponse` — a wrong field name or type fails here.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Any

import orjson
import pytest
import yaml
from jsonschema import Draft202012Validator
from referencing import Registry, Resource

from tests.conftest import GatewayFactory, MockUpstream, auth, base_config

SPEC = Path(__file__).resolve().parents[1] / "specs" / "openai-openapi.yaml"  # origin: tests/specs/SOURCES.md


@cache
def _registry() -> Registry:  # type: ignore[type-arg]
    spec = nullable_to_json_schema(yaml.load(SPEC.read_text(), Loader=yaml.CSafeLoader))
    return Registry().with_resource("spec", Resource.opaque(spec))


def spec_validator(name: str) -> Draft202012Validator:
    """A validator for one of the spec's component schemas (the spec is loaded once per test process)."""
    return Draft202012Validator({"$ref": f"spec#/components/schemas/{name}"}, registry=_registry())


@pytest.fixture(scope="module")
def validators() -> dict[str, Draft202012Validator]:
    return {n: spec_validator(n) for n in ("CreateChatCompletionResponse", "CreateChatCompletionStreamResponse",
                                      "CreateEmbeddingResponse", "ListModelsResponse", "ErrorResponse")}


def nullable_to_json_schema(node: Any) -> Any:
    """The spec still marks optional-null fields with OpenAPI 3.0's `nullable: true`, which JSON Schema
    2020-12 ignores; the real API sends those nulls (e.g. `finish_reason: null` in chunks)."""
    if isinstance(node, list):
        return [nullable_to_json_schema(x) for x in node]
    if not isinstance(node, dict):
        return node
    out = {k: nullable_to_json_schema(v) for k, v in node.items()}
    if out.pop("nullable", False) is True:
        return {"anyOf": [out, {"type": "null"}]}
    return out


def check(v: Draft202012Validator, doc: Any) -> None:
    errors = sorted(v.iter_errors(doc), key=lambda e: list(e.path))
    assert not errors, "\n".join(f"{list(e.path)}: {e.message}" for e in errors[:5])


def provider_config(upstream: str) -> dict[str, Any]:
    cfg = base_config(upstream)
    cfg["providers"].update({
        "anthropic": {"type": "anthropic", "base_url": upstream + "/anthropic", "api_key": "sk-upstream"},
        "gemini": {"type": "gemini", "base_url": upstream, "api_key": "sk-upstream"},
        "azure": {"type": "azure", "base_url": upstream, "api_key": "sk-upstream"},
        "mistral": {"type": "mistral", "base_url": upstream + "/mistral/v1", "api_key": "sk-upstream"},
    })
    for name, model in (("anthropic", "claude-3-5-haiku-latest"), ("gemini", "gemini-2.0-flash"),
                        ("azure", "gpt4o-deploy"), ("mistral", "mistral-small-latest")):
        cfg["models"][name] = {"route": [{"provider": name, "model": model}]}
    return cfg


ALIASES = ["demo", "up", "anthropic", "gemini", "azure", "mistral"]


@pytest.mark.parametrize("alias", ALIASES)
async def test_chat_responses_match_spec(alias: str, validators, gateway_factory: GatewayFactory,  # type: ignore[no-untyped-def]
                                         mock_upstream: MockUpstream, http) -> None:
    gw = await gateway_factory(provider_config(mock_upstream.url))
    body = {"model": alias, "messages": [{"role": "system", "content": "be brief"},
                                         {"role": "user", "content": "hello spec"}], "max_tokens": 50}
    async with http.post(gw.base_url + "/chat/completions", json=body, headers=auth()) as r:
        assert r.status == 200, await r.text()
        check(validators["CreateChatCompletionResponse"], await r.json())
    stream = {**body, "stream": True, "stream_options": {"include_usage": True}}
    async with http.post(gw.base_url + "/chat/completions", json=stream, headers=auth()) as r:
        raw = await r.read()
    events = [e[6:] for e in raw.split(b"\n\n") if e.startswith(b"data: ")]
    assert events[-1] == b"[DONE]"
    chunks = [orjson.loads(e) for e in events[:-1]]
    assert chunks and chunks[-1]["usage"]["total_tokens"] > 0
    for c in chunks:
        check(validators["CreateChatCompletionStreamResponse"], c)


async def test_embeddings_models_errors_match_spec(validators, gateway_factory: GatewayFactory,  # type: ignore[no-untyped-def]
                                                   mock_upstream: MockUpstream, http) -> None:
    gw = await gateway_factory(provider_config(mock_upstream.url))
    for alias in ("demo", "up", "gemini"):
        async with http.post(gw.base_url + "/embeddings", json={"model": alias, "input": ["a b", "c"]},
                             headers=auth()) as r:
            assert r.status == 200, await r.text()
            check(validators["CreateEmbeddingResponse"], await r.json())
    async with http.get(gw.base_url + "/models", headers=auth()) as r:
        check(validators["ListModelsResponse"], await r.json())
    for body, status in (({"model": "nope", "messages": [{"role": "user", "content": "x"}]}, 404),
                         ({"model": "demo"}, 400)):
        async with http.post(gw.base_url + "/chat/completions", json=body, headers=auth()) as r:
            assert r.status == status
            check(validators["ErrorResponse"], await r.json())
