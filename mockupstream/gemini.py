"""Gemini (Google AI Developer API, v1beta) wire format: POST /v1beta/models/{model}:generateContent,
:streamGenerateContent (`?alt=sse` -> `data:` events framed with CRLF as Google does; without it a
JSON array), :embedContent, :batchEmbedContents; GET /v1beta/models.

Validated like the real API (gemini_checks.py): the key goes in `x-goog-api-key` (or `?key=`);
missing -> 403 PERMISSION_DENIED, wrong -> 400 INVALID_ARGUMENT with reason API_KEY_INVALID (as
Google answers). Unknown field names are 400 'Unknown name "x": Cannot find field.'; contents and
parts must be non-empty, roles user/model, one data field a part, base64 inlineData, function
responses must answer the previous turn's calls one for one; a model named `missing*` is 404.

Deterministic replies (`replies`): the text echoes the last user text (or lorem), one word a token;
maxOutputTokens cuts it (MAX_TOKENS), stopSequences end it; candidateCount gives that many equal
candidates. Tool calls (as toolcalls.py): when functionDeclarations are offered, the mode is not
NONE and the last user turn holds no functionResponse, the reply is one `functionCall` (the only
allowed function, or the first) with arguments built from its schema, without an id; after function
responses the reply is "the tool said <responses>". Streams send one word an event, the last one
carrying finishReason and the full usageMetadata.
Markers in the last user text: `[[content_filter]]` -> promptFeedback.blockReason SAFETY and no
candidates, `[[output_filter]]` -> finishReason SAFETY, `[[too_long]]` -> 400 "exceeds the maximum
number of tokens", `[[stream_error:<STATUS>]]` -> an `{"error": ...}` event after the first chunk.
Faults: error_status/error_rate answer with Google's error body (429 RESOURCE_EXHAUSTED with a
RetryInfo, 503 UNAVAILABLE); cut_after drops the stream.
"""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
from aiohttp import web

from mockupstream.gemini_checks import Checker
from mockupstream.server import STATE_KEY, MockState, abort, json_response, read_json
from mockupstream.toolcalls import call_id, fake_arguments, markers
from proxy.providers.mock import replies

PREFIX = "/v1beta"
CONTEXT_WINDOW = 1_048_576
STATUS_NAMES = {400: "INVALID_ARGUMENT", 401: "UNAUTHENTICATED", 403: "PERMISSION_DENIED", 404: "NOT_FOUND",
                409: "ABORTED", 429: "RESOURCE_EXHAUSTED", 499: "CANCELLED", 500: "INTERNAL",
                501: "NOT_IMPLEMENTED", 503: "UNAVAILABLE", 504: "DEADLINE_EXCEEDED"}
CODES = {v: k for k, v in STATUS_NAMES.items()}


def error(status: int, message: str, details: list[dict[str, Any]] | None = None) -> web.Response:
    name = STATUS_NAMES.get(status, "INTERNAL" if status >= 500 else "FAILED_PRECONDITION")
    if status == 429 and details is None:
        details = [{"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "1s"}]
    err: dict[str, Any] = {"code": status, "message": message, "status": name}
    if details:
        err["details"] = details
    return json_response({"error": err}, status=status)


def check_key(request: web.Request, state: MockState) -> None:
    key = request.headers.get("x-goog-api-key") or request.query.get("key")
    if state.api_key is None or key == state.api_key:
        return
    if not key:
        raise abort(error(403, "Method doesn't allow unregistered callers (callers without established "
                               "identity). Please use API Key or other form of API consumer identity to call "
                               "this API."))
    raise abort(error(400, "API key not valid. Please pass a valid API key.", [{
        "@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": "API_KEY_INVALID",
        "domain": "googleapis.com", "metadata": {"service": "generativelanguage.googleapis.com"}}]))


def part_text(parts: list[dict[str, Any]]) -> str:
    return " ".join(p["text"] for p in parts if isinstance(p.get("text"), str))


def lower_schema(s: Any) -> Any:
    """Gemini's upper-case types -> JSON Schema's, for toolcalls.fake_arguments."""
    if isinstance(s, dict):
        return {k: (v.lower() if k == "type" and isinstance(v, str) else lower_schema(v)) for k, v in s.items()}
    return s


def tool_to_call(body: dict[str, Any], last: dict[str, Any]) -> tuple[str, dict[str, Any]] | None:
    fns = [f for t in body.get("tools") or () for f in t.get("functionDeclarations") or ()]
    config = (body.get("toolConfig") or {}).get("functionCallingConfig") or {}
    if not fns or config.get("mode") == "NONE" or last["role"] != "user":
        return None
    if any("functionResponse" in p for p in last["parts"]):
        return None
    allowed = config.get("allowedFunctionNames") or []
    fn = next((f for f in fns if f["name"] in allowed), fns[0])
    return fn["name"], fake_arguments(lower_schema(fn.get("parameters")))


Answer = tuple[list[dict[str, Any]], dict[str, Any], dict[str, str]]


def plan(body: dict[str, Any], state: MockState) -> Answer:
    """-> (candidates, usageMetadata, markers) of the whole answer."""
    contents, b = body["contents"], state.behaviour
    last = contents[-1]
    system = part_text((body.get("systemInstruction") or {}).get("parts") or [])
    prompt = replies.count_tokens(system) + sum(replies.count_tokens(part_text(c["parts"])) for c in contents)
    flags = markers(part_text(last["parts"])) if last["role"] == "user" else {}
    if "too_long" in flags or prompt > CONTEXT_WINDOW:
        raise abort(error(400, f"The input token count ({max(prompt, CONTEXT_WINDOW + 1)}) exceeds the maximum "
                               f"number of tokens allowed ({CONTEXT_WINDOW})."))
    config = body.get("generationConfig") or {}
    usage = {"promptTokenCount": prompt, "candidatesTokenCount": 0, "totalTokenCount": prompt,
             "promptTokensDetails": [{"modality": "TEXT", "tokenCount": prompt}]}
    if "content_filter" in flags:
        return [], usage, flags
    tool = tool_to_call(body, last)
    finish = "STOP"
    if tool is not None:
        parts: list[dict[str, Any]] = [{"functionCall": {"name": tool[0], "args": tool[1]}}]
        words = ["call"] * 5  # a function call costs a few tokens
    else:
        responses = [p["functionResponse"].get("response") for p in last["parts"] if "functionResponse" in p]
        if responses:
            said = [r["output"] if isinstance(r.get("output"), str) else orjson.dumps(r).decode() for r in responses]
            words = f"the tool said {' '.join(said)}".split()
        else:
            openai_like = [{"role": c["role"], "content": part_text(c["parts"])} for c in contents]
            words = replies.reply_words(openai_like, b.reply, b.reply_tokens, None)
        for i, w in enumerate(words):
            if any(s and s in w for s in config.get("stopSequences") or ()):
                words = words[:i]
                break
        limit = config.get("maxOutputTokens")
        if limit is not None and len(words) >= limit:
            words, finish = words[:limit], "MAX_TOKENS"
        if "output_filter" in flags:
            words, finish = words[:1], "SAFETY"
        parts = [{"text": " ".join(words)}]
    n = int(config.get("candidateCount") or 1)
    candidates = [{"content": {"parts": parts, "role": "model"}, "finishReason": finish, "index": i}
                  for i in range(n)]
    usage.update(candidatesTokenCount=len(words) * n, totalTokenCount=prompt + len(words) * n)
    return candidates, usage, flags


def response(body: dict[str, Any], model: str, candidates: list[Any], usage: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {"candidates": candidates, "usageMetadata": usage, "modelVersion": model,
                           "responseId": call_id(orjson.dumps(body["contents"]).decode(), 22, "")}
    if not candidates:
        out = {"promptFeedback": {"blockReason": "SAFETY", "safetyRatings": [
            {"category": "HARM_CATEGORY_DANGEROUS_CONTENT", "probability": "HIGH", "blocked": True}]},
            "usageMetadata": usage, "modelVersion": model, "responseId": out["responseId"]}
    return out


def stream_events(body: dict[str, Any], model: str, answer: Answer) -> list[Any]:
    """The answer as Google streams it: one word an event, finishReason and full usage on the last."""
    candidates, usage, flags = answer
    full = response(body, model, candidates, usage)
    if not candidates or "functionCall" in candidates[0]["content"]["parts"][0]:
        return [full]
    words = candidates[0]["content"]["parts"][0]["text"].split(" ")
    running = {k: v for k, v in usage.items() if k != "candidatesTokenCount"}
    out = []
    for j, w in enumerate(words):
        text = w if j == 0 else " " + w
        cands = [{"content": {"parts": [{"text": text}], "role": "model"}, "index": c["index"]} for c in candidates]
        if j == len(words) - 1:
            for c, src in zip(cands, candidates, strict=True):
                c["finishReason"] = src["finishReason"]
            out.append({**full, "candidates": cands})
        else:
            out.append({**full, "candidates": cands, "usageMetadata": running})
    if "stream_error" in flags:
        name = (flags["stream_error"] or "UNAVAILABLE").upper()
        out[1:] = [{"error": {"code": CODES.get(name, 500), "message": f"mock {name}", "status": name}}]
    return out


async def write_sse(request: web.Request, state: MockState, events: list[Any]) -> web.StreamResponse:
    resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
    await resp.prepare(request)
    gap, cut = state.gap(), state.behaviour.cut_after
    for i, ev in enumerate(events):
        if cut is not None and i >= cut:
            assert request.transport is not None
            request.transport.close()  # dropped mid-stream
            return resp
        if gap and i:
            await asyncio.sleep(gap)
        await resp.write(b"data: " + orjson.dumps(ev) + b"\r\n\r\n")
    await resp.write_eof()
    return resp


async def model_call(request: web.Request) -> web.StreamResponse:
    state = request.app[STATE_KEY]
    model, _, method = request.match_info["target"].rpartition(":")
    body = await read_json(request, error)
    state.record(request, body)
    check_key(request, state)
    if method in ("embedContent", "batchEmbedContents"):
        return await embed(state, model, method, body)
    if method not in ("generateContent", "streamGenerateContent"):
        return error(404, f"Method {method!r} is not found.")
    if model.startswith("missing"):
        return error(404, f"models/{model} is not found for API version v1beta, or is not supported for "
                          f"{method}. Call ListModels to see the list of available models and their supported "
                          "methods.")
    Checker(error).request(body)
    stream = method == "streamGenerateContent"
    await state.delay(stream)
    if (status := state.should_fail()) is not None:
        return error(status, "The model is overloaded. Please try again later." if status == 503
                     else f"mock upstream error {status}")
    answer = plan(body, state)
    if not stream:
        return json_response(response(body, model, answer[0], answer[1]))
    events = stream_events(body, model, answer)
    if request.query.get("alt") != "sse":
        return json_response(events)  # without alt=sse Google streams one JSON array
    return await write_sse(request, state, events)


async def embed(state: MockState, model: str, method: str, body: Any) -> web.Response:
    single = method == "embedContent"
    requests = [body] if single else (body.get("requests") if isinstance(body, dict) else None)
    if not isinstance(requests, list) or not requests:
        return error(400, "* BatchEmbedContentsRequest.requests: requests is not specified")
    vectors = []
    for i, req in enumerate(requests):
        where = "EmbedContentRequest" if single else f"BatchEmbedContentsRequest.requests[{i}]"
        unknown = set(req) - {"model", "content", "taskType", "title", "outputDimensionality"}
        if unknown:
            return error(400, f'Invalid JSON payload received. Unknown name "{sorted(unknown)[0]}": '
                              "Cannot find field.")
        if req.get("model", f"models/{model}") != f"models/{model}":
            return error(400, f"* {where}.model: the model in the request must match the URL's model")
        parts = (req.get("content") or {}).get("parts")
        if not isinstance(parts, list) or not parts:
            return error(400, f"* {where}.content.parts: contents.parts must not be empty.")
        dims = req.get("outputDimensionality") or 8
        if type(dims) is not int or not 1 <= dims <= 3072:  # Gemini's largest embedding size
            return error(400, f"* {where}.output_dimensionality: must be between 1 and 3072")
        vectors.append(replies.embedding_vector(part_text(parts), dims))
    await state.delay(False)
    if (status := state.should_fail()) is not None:
        return error(status, f"mock upstream error {status}")
    if single:
        return json_response({"embedding": {"values": vectors[0]}})
    return json_response({"embeddings": [{"values": v} for v in vectors]})


async def list_models(request: web.Request) -> web.Response:
    state = request.app[STATE_KEY]
    state.record(request, None)
    check_key(request, state)
    return json_response({"models": [{
        "name": "models/gemini-mock-1", "version": "001", "displayName": "Gemini Mock 1",
        "inputTokenLimit": CONTEXT_WINDOW, "outputTokenLimit": 65536,
        "supportedGenerationMethods": ["generateContent", "countTokens", "embedContent", "batchEmbedContents"]}]})


def add_routes(app: web.Application, state: MockState) -> None:
    app.router.add_post(PREFIX + "/models/{target}", model_call)
    app.router.add_get(PREFIX + "/models", list_models)
