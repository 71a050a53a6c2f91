"""Bedrock translator: Converse requests/responses/streams, errors, SigV4 signing, Titan embeddings."""

from __future__ import annotations

import base64
import struct
import sys
from urllib.parse import urlsplit

import orjson
import pytest

from mockupstream.aws import AuthFailure, validate_shape, verify_sigv4
from proxy.core.errors import UpstreamError
from proxy.providers.bedrock.config import BedrockConfig
from proxy.providers.bedrock.convert import to_converse
from proxy.providers.bedrock.errors import http_error
from proxy.providers.bedrock.translator import BedrockTranslator, embedding_inputs
from tests.providers.goldens import golden, without

MODEL = "anthropic.claude-3-haiku-20240307-v1:0"
CREDS = {"region": "eu-west-3", "access_key_id": "AKIDEXAMPLE", "secret_access_key": "secret/key+1"}


def translator(env: dict[str, str] | None = None, **cfg: object) -> BedrockTranslator:
    return BedrockTranslator("br", BedrockConfig(**{**CREDS, **cfg}), env=env or {})


@pytest.mark.parametrize("name", ["chat_basic.json", "chat_tools.json", "chat_image.json"])
def test_converse_request_golden(name: str) -> None:
    g = golden("bedrock", name)
    assert to_converse(g["openai_request"]) == g["converse_request"]
    validate_shape("ConverseRequest", g["converse_request"])  # and botocore's service model agrees


@pytest.mark.parametrize("name", ["chat_basic.json", "chat_tools.json"])
def test_converse_response_golden(name: str) -> None:
    g = golden("bedrock", name)
    c = translator().chat_response(orjson.dumps(g["converse_response"]), MODEL)
    body = orjson.loads(c.body)
    assert without(body, "id", "created") == g["openai_response"]
    assert body["id"].startswith("chatcmpl-") and body == c.data
    assert c.usage.to_openai() == g["openai_response"]["usage"]
    assert c.finish_reason == g["openai_response"]["choices"][0]["finish_reason"]


def test_cache_write_tokens_counted() -> None:
    g = golden("bedrock", "stream_text.json")
    tr = translator().stream_translator(g["openai_request"], MODEL)
    for event, payload in g["events"]:
        tr.feed(event, orjson.dumps(payload))
    assert tr.usage is not None and tr.usage.cache_write_tokens == 4 and tr.usage.prompt_tokens == 7


@pytest.mark.parametrize("name", ["stream_text.json", "stream_tool.json"])
def test_stream_golden(name: str) -> None:
    g = golden("bedrock", name)
    tr = translator().stream_translator(g["openai_request"], MODEL)
    chunks = [orjson.loads(c) for event, payload in g["events"] for c in tr.feed(event, orjson.dumps(payload))]
    chunks += [orjson.loads(c) for c in tr.finish()]
    include_usage = bool(g["openai_request"].get("stream_options"))
    content = chunks[:-1] if include_usage else chunks
    assert [[c["choices"][0]["delta"], c["choices"][0]["finish_reason"]] for c in content] == g["deltas"]
    assert len({c["id"] for c in chunks}) == 1
    assert all(c["object"] == "chat.completion.chunk" and c["model"] == MODEL for c in chunks)
    if include_usage:
        assert chunks[-1]["choices"] == [] and chunks[-1]["usage"] == g["usage"]
    assert tr.usage is not None and tr.usage.to_openai() == g["usage"]
    assert tr.finish_reason == g["deltas"][-1][1]


@pytest.mark.parametrize("stop,finish", [("end_turn", "stop"), ("stop_sequence", "stop"), ("max_tokens", "length"),
                                         ("tool_use", "tool_calls"), ("guardrail_intervened", "content_filter"),
                                         ("content_filtered", "content_filter"),
                                         ("model_context_window_exceeded", "length"),
                                         ("malformed_tool_use", "stop")])
def test_stop_reasons(stop: str, finish: str) -> None:
    data = {"output": {"message": {"role": "assistant", "content": [{"text": "x"}]}}, "stopReason": stop,
            "usage": {"inputTokens": 1, "outputTokens": 1, "totalTokens": 2}, "metrics": {"latencyMs": 1}}
    assert translator().chat_response(orjson.dumps(data), MODEL).finish_reason == finish


def test_reasoning_content_is_surfaced() -> None:
    data = {"output": {"message": {"role": "assistant", "content": [
        {"reasoningContent": {"reasoningText": {"text": "think", "signature": "s"}}}, {"text": "answer"}]}},
        "stopReason": "end_turn", "usage": {"inputTokens": 1, "outputTokens": 1, "totalTokens": 2}}
    msg = translator().chat_response(orjson.dumps(data), MODEL).data["choices"][0]["message"]  # type: ignore[index]
    assert msg["content"] == "answer" and msg["reasoning_content"] == "think"


@pytest.mark.parametrize("body,param,code", [
    ({"messages": [{"role": "user", "content": [{"type": "image_url",
                                                 "image_url": {"url": "https://x/cat.png"}}]}]},
     "messages[0].content[0].image_url", "unsupported_image_url"),
    ({"messages": [{"role": "user", "content": [{"type": "image_url",
                                                 "image_url": {"url": "data:image/bmp;base64,AAAA"}}]}]},
     "messages[0].content[0].image_url", "invalid_request"),
    ({"messages": [{"role": "user", "content": [{"type": "input_audio", "input_audio": {}}]}]},
     "messages[0].content[0].type", "invalid_request"),
    ({"messages": [{"role": "user", "content": "x"}], "n": 2}, "n", "invalid_request"),
    ({"messages": []}, "messages", "invalid_request"),
    ({"messages": [{"role": "function", "content": "x"}]}, "messages[0].role", "invalid_request"),
    ({"messages": [{"role": "user", "content": "x"}], "tools": [{"type": "web_search"}]}, "tools[0]",
     "invalid_request"),
])
def test_what_bedrock_cannot_do_is_a_clear_400(body: dict, param: str, code: str) -> None:
    with pytest.raises(UpstreamError) as e:
        translator().chat_request(body, MODEL, stream=False)
    assert (e.value.status, e.value.param, e.value.code, e.value.retryable) == (400, param, code, False)


def test_tool_choice_none() -> None:
    tools = [{"type": "function", "function": {"name": "f"}}]
    plain = to_converse({"messages": [{"role": "user", "content": "x"}], "tools": tools, "tool_choice": "none"})
    assert "toolConfig" not in plain
    with_history = to_converse({"tools": tools, "tool_choice": "none", "messages": [
        {"role": "user", "content": "x"},
        {"role": "assistant", "tool_calls": [{"id": "1", "function": {"name": "f", "arguments": ""}}]},
        {"role": "tool", "tool_call_id": "1", "content": ""}]})
    assert with_history["toolConfig"] == {"tools": [{"toolSpec": {"name": "f", "inputSchema": {
        "json": {"type": "object", "properties": {}}}}}]}
    assert with_history["messages"][1]["content"][0]["toolUse"]["input"] == {}
    assert with_history["messages"][2]["content"][0]["toolResult"]["content"] == [{"text": "(empty)"}]


@pytest.mark.parametrize("case", golden("bedrock", "errors.json"), ids=lambda c: c["body"]["message"][:30])
def test_error_mapping(case: dict) -> None:
    err = translator().error(case["status"], case["headers"], orjson.dumps(case["body"]))
    want = case["expect"]
    assert (err.status, err.kind, err.retryable, err.code) == (want["status"], want["kind"], want["retryable"],
                                                               want["code"])
    assert case["body"]["message"] in err.message


def test_error_non_json_body() -> None:
    err = http_error(500, {}, b"<html>bad gateway</html>")
    assert err.status == 502 and "bad gateway" in err.message


def test_request_is_signed_and_verifies() -> None:
    tr = translator()
    req = tr.chat_request(golden("bedrock", "chat_tools.json")["openai_request"], MODEL, stream=True)
    # the model id is percent-encoded, then normalised the way aiohttp/yarl will send it
    assert req.url == f"https://bedrock-runtime.eu-west-3.amazonaws.com/model/{MODEL}/converse-stream"
    assert req.headers["Accept"] == "application/vnd.amazon.eventstream"
    auth = req.headers["Authorization"]
    assert auth.startswith("AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/") and "/eu-west-3/bedrock/aws4_request" in auth
    assert "X-Amz-Date" in req.headers and "X-Amz-Security-Token" not in req.headers
    host = urlsplit(req.url).netloc
    headers = {**req.headers, "Host": host}
    scope = verify_sigv4("POST", req.url, headers, req.body or b"", "secret/key+1")  # recomputed: equal
    assert (scope["region"], scope["service"]) == ("eu-west-3", "bedrock")
    with pytest.raises(AuthFailure, match="does not match"):
        verify_sigv4("POST", req.url, headers, req.body or b"", "another-secret")
    with pytest.raises(AuthFailure, match="does not match"):
        verify_sigv4("POST", req.url, headers, (req.body or b"") + b" ", "secret/key+1")


def test_inference_profile_arn_keeps_its_encoded_slash() -> None:
    arn = "arn:aws:bedrock:us-east-1:123456789012:inference-profile/us.anthropic.claude-3-5-sonnet-20240620-v1:0"
    req = translator().chat_request({"messages": [{"role": "user", "content": "x"}]}, arn, stream=False)
    assert "/model/arn:aws:bedrock:us-east-1:123456789012:inference-profile%2Fus.anthropic" in req.url
    verify_sigv4("POST", req.url, {**req.headers, "Host": urlsplit(req.url).netloc}, req.body or b"",
                 "secret/key+1")


def test_credentials_from_env_and_session_token() -> None:
    env = {"AWS_ACCESS_KEY_ID": "AKENV", "AWS_SECRET_ACCESS_KEY": "s", "AWS_SESSION_TOKEN": "tok",
           "AWS_DEFAULT_REGION": "us-west-2"}
    tr = BedrockTranslator("br", BedrockConfig(base_url="http://127.0.0.1:9"), env=env)
    req = tr.chat_request({"messages": [{"role": "user", "content": "x"}]}, "m", stream=False)
    assert req.url == "http://127.0.0.1:9/model/m/converse"
    assert "Credential=AKENV/" in req.headers["Authorization"] and "/us-west-2/bedrock/" in req.headers["Authorization"]
    assert req.headers["X-Amz-Security-Token"] == "tok"
    assert "x-amz-security-token" in req.headers["Authorization"]  # signed too


def test_api_key_is_a_bearer_token() -> None:
    tr = BedrockTranslator("br", BedrockConfig(region="us-east-1", api_key="ABSK-key"), env={})
    req = tr.chat_request({"messages": [{"role": "user", "content": "x"}]}, "m", stream=False)
    assert req.headers["Authorization"] == "Bearer ABSK-key"


@pytest.mark.parametrize("cfg,env,fragment", [
    ({}, {"AWS_REGION": "us-east-1"}, "no AWS credentials"),
    ({"access_key_id": "a", "secret_access_key": "b"}, {}, "no region"),
])
def test_missing_config_is_a_503_at_call_time(cfg: dict, env: dict, fragment: str) -> None:
    tr = BedrockTranslator("br", BedrockConfig(**cfg), env=env)  # constructing never fails
    for call in (lambda: tr.chat_request({"messages": [{"role": "user", "content": "x"}]}, "m", False),
                 tr.probe_request):
        with pytest.raises(UpstreamError) as e:
            call()
        assert e.value.status == 503 and e.value.code == "provider_unavailable" and fragment in e.value.message


def test_missing_botocore_is_reported_not_raised(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in [m for m in sys.modules if m == "botocore" or m.startswith("botocore.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "botocore", None)  # makes `import botocore...` raise ImportError
    tr = translator()
    with pytest.raises(UpstreamError) as e:
        tr.chat_request({"messages": [{"role": "user", "content": "x"}]}, "m", stream=False)
    assert e.value.status == 503 and "pip install 'llm-gateway[bedrock]'" in e.value.message


def test_titan_embeddings() -> None:
    tr = translator()
    req = tr.embeddings_request({"input": "hello world", "dimensions": 256}, "amazon.titan-embed-text-v2:0")
    assert req.url.endswith("/model/amazon.titan-embed-text-v2:0/invoke")
    assert orjson.loads(req.body or b"") == {"inputText": "hello world", "dimensions": 256}
    c = tr.embeddings_response(orjson.dumps({"embedding": [0.5, -1.0], "inputTextTokenCount": 3}), "t")
    assert c.data is not None and c.data["data"][0]["embedding"] == [0.5, -1.0] and c.usage.prompt_tokens == 3
    assert embedding_inputs({"input": ["a", "b"]}) == ["a", "b"]
    for bad in ({"input": [[1, 2]]}, {"input": ""}, {"input": ["x"] * 129}):
        with pytest.raises(UpstreamError) as e:
            embedding_inputs(bad)
        assert e.value.status == 400 and e.value.param == "input"


def test_base64_encoding_format() -> None:
    from proxy.providers.shapes import encode_embedding

    packed = encode_embedding([0.5, -1.0], "base64")
    assert isinstance(packed, str) and struct.unpack("<2f", base64.b64decode(packed)) == (0.5, -1.0)
    assert encode_embedding([0.5], "float") == [0.5]
