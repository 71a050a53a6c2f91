"""The mock upstream's Azure, Mistral, Ollama and Bedrock wire formats behave like the real services:
validation, auth, error bodies — and botocore's own client accepts the Bedrock mock."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import orjson
import pytest

from mockupstream.aws import validate_shape
from tests.conftest import MockUpstream

MSG = [{"role": "user", "content": "hello mock"}]
KEY = {"api-key": "sk-upstream"}


# ---------------------------------------------------------------- Azure
async def test_azure_validation(mock_upstream: MockUpstream, http: aiohttp.ClientSession) -> None:
    url = mock_upstream.url + "/openai/deployments/d1/chat/completions"
    cases = [(url, KEY, 404, "Resource not found"),
             (url + "?api-version=latest", KEY, 400, "API version not supported"),
             (url + "?api-version=2024-10-21", {"api-key": "bad"}, 401, "Access denied"),
             (url.replace("d1", "missing-1") + "?api-version=2024-10-21", KEY, 404, "does not exist")]
    for u, headers, status, text in cases:
        async with http.post(u, json={"messages": MSG}, headers=headers) as r:
            assert r.status == status
            assert text in (await r.json())["error"]["message"]
    async with http.post(url + "?api-version=2024-10-21", json={"messages": MSG},
                         headers={"Authorization": "Bearer sk-upstream"}) as r:  # Entra token
        assert r.status == 200 and (await r.json())["prompt_filter_results"]
    stream = {"messages": MSG, "stream": True, "stream_options": {"include_usage": True}}
    async with http.post(url + "?api-version=2024-06-01", json=stream, headers=KEY) as r:
        assert r.status == 400 and "stream_options" in (await r.json())["error"]["message"]
    async with http.get(mock_upstream.url + "/openai/models?api-version=2024-10-21", headers=KEY) as r:
        assert r.status == 200 and (await r.json())["data"]


# ---------------------------------------------------------------- Mistral
async def test_mistral_rejects_what_mistral_rejects(mock_upstream: MockUpstream,
                                                    http: aiohttp.ClientSession) -> None:
    url, h = mock_upstream.url + "/mistral/v1/chat/completions", {"Authorization": "Bearer sk-upstream"}
    bad = [({"stream": True, "stream_options": {"include_usage": True}}, ["body", "stream_options"]),
           ({"max_completion_tokens": 5}, ["body", "max_completion_tokens"]),
           ({"messages": [{"role": "user", "content": "x", "name": "bob"}]}, ["body", "messages", 0, "user", "name"])]
    for extra, loc in bad:
        async with http.post(url, json={"model": "m", "messages": MSG, **extra}, headers=h) as r:
            assert r.status == 422
            body = await r.json()
        assert body["object"] == "error" and body["message"]["detail"][0]["loc"] == loc
    tool_msgs = [*MSG, {"role": "assistant", "tool_calls": [{"id": "call_123", "type": "function",
                                                              "function": {"name": "f", "arguments": "{}"}}]}]
    async with http.post(url, json={"model": "m", "messages": tool_msgs}, headers=h) as r:
        assert r.status == 400 and "length of 9" in (await r.json())["message"]
    async with http.post(url, json={"model": "m", "messages": MSG}, headers={"Authorization": "Bearer x"}) as r:
        assert r.status == 401 and (await r.json())["message"] == "Unauthorized"
    async with http.post(url, json={"model": "m", "messages": MSG, "stream": True}, headers=h) as r:
        events = [e for e in (await r.read()).decode().split("\n\n") if e]
    assert events[-1] == "data: [DONE]"
    last = orjson.loads(events[-2][6:])
    assert last["choices"][0]["finish_reason"] == "stop" and last["usage"]["completion_tokens"] == 2


# ---------------------------------------------------------------- Ollama
async def test_ollama_routes(mock_upstream: MockUpstream, http: aiohttp.ClientSession) -> None:
    async with http.get(mock_upstream.url + "/ollama/api/tags") as r:
        assert r.status == 200 and (await r.json())["models"][0]["name"] == "llama3.2:latest"
    url = mock_upstream.url + "/ollama/v1/chat/completions"
    async with http.post(url, json={"model": "llama3.2", "messages": MSG}) as r:  # no key needed
        assert r.status == 200 and (await r.json())["choices"][0]["message"]["content"] == "hello mock"
    async with http.post(url, json={"model": "missing-x", "messages": MSG}) as r:
        assert r.status == 404 and "try pulling it first" in (await r.json())["error"]["message"]


# ---------------------------------------------------------------- Bedrock
def signed(url: str, body: bytes, secret: str = "sk-upstream", service: str = "bedrock",
           region: str = "us-east-1") -> dict[str, str]:
    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    req = AWSRequest(method="POST", url=url, data=body, headers={"Content-Type": "application/json"})
    SigV4Auth(Credentials("AKIDEXAMPLE", secret), service, region).add_auth(req)
    return dict(req.headers.items())


async def post(http: aiohttp.ClientSession, url: str, body: Any, headers: dict[str, str] | None = None
               ) -> tuple[int, dict[str, Any], str]:
    data = orjson.dumps(body)
    async with http.post(url, data=data, headers=headers if headers is not None else signed(url, data)) as r:
        return r.status, await r.json(), r.headers.get("x-amzn-ErrorType", "").split(":")[0]


@pytest.mark.parametrize("body,fragment", [
    ({"messages": MSG}, "messages.1.member.content"),  # OpenAI content shape is not Converse's
    ({"messages": [{"role": "user", "content": [{"text": "x"}]}], "max_tokens": 5}, "extraneous key [max_tokens]"),
    ({"messages": [{"role": "user", "content": [{"text": "x"}]}], "inferenceConfig": {"topK": 5}},
     "extraneous key [topK]"),
    ({"messages": [{"role": "user", "content": [{"text": "x"}]}], "inferenceConfig": {"temperature": 1.5}},
     "inferenceConfig.temperature"),
    ({"messages": [{"role": "assistant", "content": [{"text": "x"}]}]}, "must start with a user message"),
    ({"messages": [{"role": "user", "content": [{"text": "x"}]}, {"role": "user", "content": [{"text": "y"}]}]},
     "must alternate"),
    ({"messages": [{"role": "user", "content": [{"text": " "}]}]}, "is blank"),
    ({"messages": [{"role": "user", "content": [{"text": "x", "image": {}}]}]}, "exactly one member"),
    ({"messages": [{"role": "user", "content": [{"toolResult": {"toolUseId": "t", "content": [{"text": "x"}]}}]}]},
     "toolConfig field must be defined"),
])
async def test_bedrock_converse_validation(mock_upstream: MockUpstream, http: aiohttp.ClientSession,
                                           body: dict[str, Any], fragment: str) -> None:
    status, data, etype = await post(http, mock_upstream.url + "/model/m1/converse", body)
    assert (status, etype) == (400, "ValidationException") and fragment in data["message"]


async def test_bedrock_auth(mock_upstream: MockUpstream, http: aiohttp.ClientSession) -> None:
    url = mock_upstream.url + "/model/m1/converse"
    body = {"messages": [{"role": "user", "content": [{"text": "x"}]}]}
    data = orjson.dumps(body)
    cases = [({}, "MissingAuthenticationTokenException"),
             ({"Authorization": "AWS4-HMAC-SHA256 garbage"}, "IncompleteSignatureException"),
             (signed(url, data, service="s3"), "InvalidSignatureException"),
             (signed(url, data, secret="nope"), "InvalidSignatureException"),
             ({**signed(url, data), "X-Amz-Date": "20200101T000000Z"}, "InvalidSignatureException"),
             ({"Authorization": "Bearer wrong"}, "AccessDeniedException")]
    for headers, etype in cases:
        assert (await post(http, url, body, headers))[::2] == (403, etype)
    assert (await post(http, url, body, {"Authorization": "Bearer sk-upstream"}))[0] == 200
    assert (await post(http, url, body))[0] == 200


async def test_bedrock_titan(mock_upstream: MockUpstream, http: aiohttp.ClientSession) -> None:
    url = mock_upstream.url + "/model/amazon.titan-embed-text-v2:0/invoke"
    status, data, _ = await post(http, url, {"inputText": "a b", "dimensions": 256})
    assert status == 200 and len(data["embedding"]) == 256 and data["inputTextTokenCount"] == 2
    status, data, _ = await post(http, url, {"inputText": "a", "input": "b"})
    assert status == 400 and "extraneous key [input]" in data["message"]
    status, data, _ = await post(http, url.replace("amazon.titan-embed-text-v2:0", "m1"), {"inputText": "a"})
    assert status == 400


def test_service_model_validation_accepts_real_shapes() -> None:
    validate_shape("ConverseRequest", {
        "messages": [{"role": "user", "content": [{"text": "x"}, {"cachePoint": {"type": "default"}}]}],
        "system": [{"text": "s"}], "additionalModelRequestFields": {"anything": [1, {"goes": True}]},
        "toolConfig": {"tools": [{"toolSpec": {"name": "t", "inputSchema": {"json": {"type": "object"}}}}],
                       "toolChoice": {"auto": {}}}})


async def test_botocore_client_accepts_the_mock(mock_upstream: MockUpstream) -> None:
    """AWS's own client, pointed at the mock: request signing, JSON and event-stream parsing all agree."""
    import botocore.session

    client = botocore.session.get_session().create_client(
        "bedrock-runtime", region_name="us-east-1", endpoint_url=mock_upstream.url,
        aws_access_key_id="AKIDEXAMPLE", aws_secret_access_key="sk-upstream")
    kwargs = {"modelId": "anthropic.claude-3-haiku-20240307-v1:0",
              "messages": [{"role": "user", "content": [{"text": "hello botocore"}]}]}

    def run() -> tuple[dict[str, Any], list[dict[str, Any]], dict[str, Any]]:
        full = client.converse(**kwargs)
        events = list(client.converse_stream(**kwargs)["stream"])
        emb = client.invoke_model(modelId="amazon.titan-embed-text-v2:0", body=b'{"inputText":"x y"}')
        return full, events, orjson.loads(emb["body"].read())

    full, events, emb = await asyncio.to_thread(run)
    assert full["output"]["message"]["content"] == [{"text": "hello botocore"}]
    assert full["stopReason"] == "end_turn" and full["usage"]["outputTokens"] == 2
    assert [next(iter(e)) for e in events] == ["messageStart", "contentBlockDelta", "contentBlockDelta",
                                               "contentBlockStop", "messageStop", "metadata"]
    assert emb["inputTextTokenCount"] == 2
