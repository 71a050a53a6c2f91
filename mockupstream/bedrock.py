"""Bedrock Runtime wire format: /model/{modelId}/converse, /converse-stream and /invoke (Titan embeddings).

Like AWS: every call must carry a well-formed SigV4 `Authorization` (service `bedrock`, a region,
`x-amz-date` signed and current); with the mock's api_key set, it is the secret key and the
signature is recomputed with botocore (or it is accepted as a Bedrock API key: `Bearer <key>`).
Converse bodies are validated against botocore's service model (unknown fields rejected) plus
Converse's own rules (user first, alternating roles, no blank text, toolConfig with tool blocks).
Errors are `{"message"}` with `x-amzn-ErrorType`; streams are binary event-stream frames.

Markers in the last user message: `[[too_long]]` -> "Input is too long" ValidationException,
`[[guardrail]]` -> stopReason guardrail_intervened, `[[stream_error:throttlingException]]` -> an
exception frame after the first delta.
"""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
from aiohttp import web

from mockupstream.aws import AuthFailure, Invalid, event_frame, exception_frame, validate_shape, verify_sigv4
from mockupstream.server import STATE_KEY, MockState, abort
from mockupstream.toolcalls import call_id, fake_arguments, markers
from proxy.providers.mock import replies

ERROR_TYPES = {400: "ValidationException", 403: "AccessDeniedException", 404: "ResourceNotFoundException",
               408: "ModelTimeoutException", 424: "ModelErrorException", 429: "ThrottlingException",
               503: "ServiceUnavailableException"}
TITAN_FIELDS = {"inputText", "dimensions", "normalize", "embeddingTypes"}


def error(status: int, error_type: str, message: str) -> web.Response:
    return web.Response(status=status, body=orjson.dumps({"message": message}), content_type="application/json",
                        headers={"x-amzn-ErrorType": f"{error_type}:http://internal.amazon.com/coral/"
                                                     "com.amazon.bedrock/", "x-amzn-RequestId": "mock"})


def invalid(message: str) -> web.Response:
    return error(400, "ValidationException", message)


async def read_checked(request: web.Request, state: MockState, shape: str | None) -> dict[str, Any]:
    raw = await request.read()
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        body = None
    state.record(request, body)
    auth = request.headers.get("Authorization", "")
    if auth.startswith("Bearer "):
        if state.api_key is not None and auth != f"Bearer {state.api_key}":
            raise abort(error(403, "AccessDeniedException", "Invalid API Key format: Must start with pre-defined "
                                                            "prefix"))
    else:
        try:  # the wire path exactly as received: it is what the client signed
            verify_sigv4(request.method, f"http://{request.host}{request.raw_path}", request.headers, raw,
                         state.api_key)
        except AuthFailure as f:
            raise abort(error(403, f.error_type, f.message)) from None
    if not isinstance(body, dict):
        raise abort(invalid("Malformed input request, please reformat your input and try again."))
    if shape is not None:
        try:
            validate_shape(shape, body)
            check_conversation(body)
        except Invalid as err:
            raise abort(invalid(str(err))) from None
    return body


def check_conversation(body: dict[str, Any]) -> None:
    """Converse rules beyond the shapes (wording as Bedrock's)."""
    messages = body.get("messages") or []
    if not messages:
        raise Invalid("The messages field is required.")
    if messages[0]["role"] != "user":
        raise Invalid("A conversation must start with a user message. Try again with a conversation that "
                      "starts with a user message.")
    previous_tool_ids: set[str] = set()
    for i, m in enumerate(messages):
        if i and m["role"] == messages[i - 1]["role"]:
            raise Invalid("A conversation must alternate between user and assistant roles. Make sure the "
                          "conversation alternates between user and assistant roles and try again.")
        for j, block in enumerate(m["content"]):
            if "text" in block and not block["text"].strip():
                raise Invalid(f"The text field in the ContentBlock object at messages.{i}.content.{j} is blank. "
                              "Add text to the text field, and try again.")
            if ("toolUse" in block or "toolResult" in block) and "toolConfig" not in body:
                raise Invalid("The toolConfig field must be defined when using toolUse and toolResult content "
                              "blocks.")
            if "toolResult" in block and block["toolResult"]["toolUseId"] not in previous_tool_ids:
                raise Invalid(f"messages.{i}.content.{j}.toolResult.toolUseId doesn't match any toolUse id "
                              "of the previous assistant turn.")
        previous_tool_ids = {b["toolUse"]["toolUseId"] for b in m["content"] if "toolUse" in b}


def injected(state: MockState) -> web.Response | None:
    status = state.should_fail()
    if status is None:
        return None
    name = ERROR_TYPES.get(status, "InternalServerException")
    text = "Too many requests, please wait before trying again." if status == 429 else f"mock error {status}"
    return error(status, name, text)


def plan(body: dict[str, Any], state: MockState) -> dict[str, Any]:
    """What the mock model answers: text words or a tool call, stop reason, token counts."""
    messages = body["messages"]
    flat = [{"role": m["role"], "content": " ".join(b.get("text", "") for b in m["content"])} for m in messages]
    last = messages[-1]
    flags = markers(flat[-1]["content"]) if last["role"] == "user" else {}
    p_tokens = replies.prompt_tokens(flat) + sum(replies.count_tokens(s.get("text", ""))
                                                 for s in body.get("system") or [])
    tools = [t["toolSpec"] for t in (body.get("toolConfig") or {}).get("tools") or [] if "toolSpec" in t]
    results = [b["toolResult"] for b in last["content"] if "toolResult" in b]
    out: dict[str, Any] = {"flags": flags, "p_tokens": p_tokens, "tool": None}
    if tools and not results:
        forced = ((body["toolConfig"].get("toolChoice") or {}).get("tool") or {}).get("name")
        spec = next((t for t in tools if t["name"] == forced), tools[0])
        out.update(tool={"toolUseId": call_id(spec["name"], 24, "tooluse_"), "name": spec["name"],
                         "input": fake_arguments(spec["inputSchema"].get("json"))}, stop="tool_use", words=[])
        return out
    if results:
        text = " ".join(c.get("text", "") for r in results for c in r.get("content") or [])
        words = f"the tool said {text}".split()
    else:
        b = state.behaviour
        words = replies.reply_words(flat, b.reply, b.reply_tokens, None)
    max_tokens = (body.get("inferenceConfig") or {}).get("maxTokens")
    stop = "end_turn"
    if max_tokens is not None and len(words) >= max_tokens:
        words, stop = words[:max_tokens], "max_tokens"
    if "guardrail" in flags:
        words, stop = "Sorry, the model cannot answer this question.".split(), "guardrail_intervened"
    out.update(words=words, stop=stop)
    return out


def usage(p: dict[str, Any]) -> dict[str, int]:
    out_tokens = len(p["words"]) or 5
    return {"inputTokens": p["p_tokens"], "outputTokens": out_tokens, "totalTokens": p["p_tokens"] + out_tokens}


async def converse(request: web.Request) -> web.StreamResponse:
    state = request.app[STATE_KEY]
    body = await read_checked(request, state, "ConverseRequest")
    await state.delay(False)
    if (failed := injected(state)) is not None:
        return failed
    p = plan(body, state)
    if "too_long" in p["flags"]:
        return invalid("Input is too long for requested model.")
    content = [{"toolUse": p["tool"]}] if p["tool"] else [{"text": " ".join(p["words"])}]
    return web.Response(body=orjson.dumps({
        "output": {"message": {"role": "assistant", "content": content}}, "stopReason": p["stop"],
        "usage": usage(p), "metrics": {"latencyMs": 12}}), content_type="application/json")


def stream_events(p: dict[str, Any]) -> list[bytes]:
    frames = [event_frame("messageStart", {"role": "assistant"})]
    if p["tool"]:
        tool = p["tool"]
        frames.append(event_frame("contentBlockStart", {"contentBlockIndex": 0, "start": {"toolUse": {
            "toolUseId": tool["toolUseId"], "name": tool["name"]}}}))
        args = orjson.dumps(tool["input"]).decode()
        half = len(args) // 2  # input JSON arrives in pieces, like the real thing
        for piece in (args[:half], args[half:]):
            frames.append(event_frame("contentBlockDelta", {"contentBlockIndex": 0,
                                                            "delta": {"toolUse": {"input": piece}}}))
    else:
        for i, w in enumerate(p["words"]):
            frames.append(event_frame("contentBlockDelta", {"contentBlockIndex": 0,
                                                            "delta": {"text": w if i == 0 else " " + w}}))
    frames.append(event_frame("contentBlockStop", {"contentBlockIndex": 0}))
    frames.append(event_frame("messageStop", {"stopReason": p["stop"]}))
    frames.append(event_frame("metadata", {"usage": usage(p), "metrics": {"latencyMs": 12}}))
    return frames


async def converse_stream(request: web.Request) -> web.StreamResponse:
    state = request.app[STATE_KEY]
    body = await read_checked(request, state, "ConverseStreamRequest")
    await state.delay(True)
    if (failed := injected(state)) is not None:
        return failed
    p = plan(body, state)
    if "too_long" in p["flags"]:
        return invalid("Input is too long for requested model.")
    frames = stream_events(p)
    if "stream_error" in p["flags"]:
        frames = [*frames[:2], exception_frame(p["flags"]["stream_error"] or "internalServerException",
                                               "mock stream failure")]
    resp = web.StreamResponse(headers={"Content-Type": "application/vnd.amazon.eventstream",
                                       "x-amzn-RequestId": "mock"})
    await resp.prepare(request)
    gap, cut = state.gap(), state.behaviour.cut_after
    for i, frame in enumerate(frames):
        if cut is not None and i >= cut:
            assert request.transport is not None
            request.transport.close()
            return resp
        if gap and i:
            await asyncio.sleep(gap)
        await resp.write(frame)
    await resp.write_eof()
    return resp


async def invoke(request: web.Request) -> web.StreamResponse:
    """Titan text embeddings (the only InvokeModel body the mock knows)."""
    state = request.app[STATE_KEY]
    body = await read_checked(request, state, None)
    model_id = request.match_info["model_id"]
    if not model_id.startswith("amazon.titan-embed"):
        return invalid(f"The provided model identifier is invalid for this mock: {model_id}")
    if extra := [k for k in body if k not in TITAN_FIELDS]:
        return invalid(f"Malformed input request: #: extraneous key [{extra[0]}] is not permitted, please "
                       "reformat your input and try again.")
    text, dims = body.get("inputText"), body.get("dimensions", 1024)
    if not isinstance(text, str) or not text:
        return invalid("Malformed input request: #: required key [inputText] not found, please reformat your "
                       "input and try again.")
    if dims not in (256, 512, 1024):
        return invalid(f"Malformed input request: #/dimensions: {dims} is not a valid enum value, please "
                       "reformat your input and try again.")
    if (failed := injected(state)) is not None:
        return failed
    return web.Response(body=orjson.dumps({"embedding": replies.embedding_vector(text, dims),
                                           "inputTextTokenCount": replies.count_tokens(text)}),
                        content_type="application/json")


def add_routes(app: web.Application, state: MockState) -> None:
    app.router.add_post("/model/{model_id}/converse", converse)
    app.router.add_post("/model/{model_id}/converse-stream", converse_stream)
    app.router.add_post("/model/{model_id}/invoke", invoke)
