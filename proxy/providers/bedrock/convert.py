"""OpenAI chat-completions request -> Bedrock Converse request body (pure).

Shapes follow botocore's `bedrock-runtime` service model (ConverseRequest). Converse differs from
OpenAI in ways handled here:

* system/developer messages go to the top-level `system` list;
* tool results are `toolResult` blocks inside a *user* message, and consecutive messages of the same
  role are merged (Converse wants user/assistant turns to alternate);
* images must be inline bytes (`data:` URLs); Bedrock cannot fetch http(s) URLs;
* `tool_choice: none` has no Converse equivalent: tools are left out when the conversation holds no
  tool blocks, otherwise kept without a choice (Bedrock insists on `toolConfig` once tool blocks exist).
"""

from __future__ import annotations

import re
from typing import Any

from proxy.core.errors import UpstreamError
from proxy.providers.base import JSON
from proxy.providers.inputs import data_url, tool_arguments, unsupported

IMAGE_FORMATS = {"png": "png", "jpeg": "jpeg", "jpg": "jpeg", "gif": "gif", "webp": "webp"}
_IMAGE_TYPE = re.compile(r"image/([a-zA-Z0-9.+-]+)")


def bad_request(message: str, param: str | None = None, code: str = "invalid_request") -> UpstreamError:
    """A request Bedrock cannot serve: the client's 400 (another provider type might accept it)."""
    return unsupported(message, param, code)


def _text_of(content: Any, where: str) -> str:
    if content is None or isinstance(content, str):
        return content or ""
    if isinstance(content, list):
        return "".join(p.get("text") or "" for p in content
                       if isinstance(p, dict) and p.get("type") == "text")
    raise bad_request(f"{where}.content must be a string or a list of parts", param=f"{where}.content")


def image_block(url: str, where: str) -> JSON:
    parsed = data_url(url.strip())
    m = _IMAGE_TYPE.fullmatch(parsed[0]) if parsed is not None else None
    if parsed is None or m is None:
        raise bad_request("Bedrock accepts only inline images (data:image/...;base64 URLs), not "
                          "http(s) links; download the image and send it as a data URL",
                          param=f"{where}.image_url", code="unsupported_image_url")
    fmt = IMAGE_FORMATS.get(m.group(1).lower())
    if fmt is None:
        raise bad_request(f"Bedrock accepts png, jpeg, gif or webp images, not image/{m.group(1)}",
                          param=f"{where}.image_url")
    # a blob in AWS's JSON protocol is base64 text: the data URL's payload goes through as is
    return {"image": {"format": fmt, "source": {"bytes": re.sub(r"\s+", "", parsed[1])}}}


def user_blocks(content: Any, where: str) -> list[JSON]:
    if content is None or isinstance(content, str):
        return [{"text": content}] if content else []
    if not isinstance(content, list):
        raise bad_request(f"{where}.content must be a string or a list of parts", param=f"{where}.content")
    out: list[JSON] = []
    for i, part in enumerate(content):
        kind = part.get("type") if isinstance(part, dict) else None
        if kind == "text":
            if part.get("text"):
                out.append({"text": part["text"]})
        elif kind == "image_url":
            image = part.get("image_url")
            url = image.get("url") if isinstance(image, dict) else image
            out.append(image_block(str(url or ""), f"{where}.content[{i}]"))
        else:
            raise bad_request(f"content part type {kind!r} is not supported by Bedrock",
                              param=f"{where}.content[{i}].type")
    return out


def tool_use_block(tc: Any, where: str) -> JSON:
    fn = tc.get("function") if isinstance(tc, dict) else None
    if not isinstance(fn, dict) or not fn.get("name"):
        raise bad_request("tool_calls items need function.name", param=f"{where}.tool_calls")
    try:
        parsed = tool_arguments(fn.get("arguments"))
    except ValueError:
        raise bad_request("tool call arguments must be JSON", param=f"{where}.tool_calls") from None
    return {"toolUse": {"toolUseId": str(tc.get("id") or ""), "name": fn["name"],
                        "input": parsed if isinstance(parsed, dict) else {"value": parsed}}}


def convert_messages(messages: Any) -> tuple[list[JSON], list[JSON]]:
    """OpenAI `messages` -> (Converse `system`, Converse `messages`)."""
    if not isinstance(messages, list) or not messages:
        raise bad_request("'messages' must be a non-empty array", param="messages")
    system: list[JSON] = []
    turns: list[JSON] = []
    for i, m in enumerate(messages):
        where = f"messages[{i}]"
        role = m.get("role") if isinstance(m, dict) else None
        if role in ("system", "developer"):
            text = _text_of(m.get("content"), where)
            if text:
                system.append({"text": text})
            continue
        if role == "user":
            blocks, turn_role = user_blocks(m.get("content"), where), "user"
        elif role == "assistant":
            text = _text_of(m.get("content"), where)
            blocks = [{"text": text}] if text else []
            blocks += [tool_use_block(tc, where) for tc in m.get("tool_calls") or ()]
            turn_role = "assistant"
        elif role == "tool":
            text = _text_of(m.get("content"), where)
            blocks = [{"toolResult": {"toolUseId": str(m.get("tool_call_id") or ""),
                                      "content": [{"text": text or "(empty)"}]}}]
            turn_role = "user"
        else:
            raise bad_request(f"message role {role!r} is not supported by Bedrock", param=f"{where}.role")
        if not blocks:
            continue  # Bedrock rejects empty content and blank text
        if turns and turns[-1]["role"] == turn_role:
            turns[-1]["content"].extend(blocks)
        else:
            turns.append({"role": turn_role, "content": blocks})
    if not turns:
        raise bad_request("the conversation has no user or assistant content", param="messages")
    return system, turns


def inference_config(body: JSON) -> JSON:
    out: JSON = {}
    max_tokens = body.get("max_completion_tokens")
    if max_tokens is None:
        max_tokens = body.get("max_tokens")
    if max_tokens is not None:
        out["maxTokens"] = max_tokens
    if body.get("temperature") is not None:
        out["temperature"] = body["temperature"]
    if body.get("top_p") is not None:
        out["topP"] = body["top_p"]
    stop = body.get("stop")
    if isinstance(stop, str):
        stop = [stop]
    if isinstance(stop, list) and any(stop):
        out["stopSequences"] = [s for s in stop if s]
    return out


def _has_tool_blocks(turns: list[JSON]) -> bool:
    return any("toolUse" in b or "toolResult" in b for t in turns for b in t["content"])


def tool_config(body: JSON, turns: list[JSON]) -> JSON | None:
    tools = body.get("tools")
    if not tools:
        return None
    specs: list[JSON] = []
    for i, t in enumerate(tools):
        fn = t.get("function") if isinstance(t, dict) and t.get("type") == "function" else None
        if not isinstance(fn, dict) or not fn.get("name"):
            raise bad_request("only tools of type 'function' with a name are supported", param=f"tools[{i}]")
        spec: JSON = {"name": fn["name"],
                      "inputSchema": {"json": fn.get("parameters") or {"type": "object", "properties": {}}}}
        if fn.get("description"):
            spec["description"] = fn["description"]
        specs.append({"toolSpec": spec})
    out: JSON = {"tools": specs}
    choice = body.get("tool_choice")
    if choice == "none":
        return out if _has_tool_blocks(turns) else None
    if choice == "auto":
        out["toolChoice"] = {"auto": {}}
    elif choice == "required":
        out["toolChoice"] = {"any": {}}
    elif isinstance(choice, dict):
        name = (choice.get("function") or {}).get("name")
        if not name:
            raise bad_request("tool_choice needs function.name", param="tool_choice")
        out["toolChoice"] = {"tool": {"name": name}}
    return out


def to_converse(body: JSON) -> JSON:
    """The Converse body (modelId goes in the URL). Raises a 400 UpstreamError for what Bedrock cannot do."""
    if (body.get("n") or 1) != 1:
        raise bad_request("Bedrock returns one choice: n must be 1", param="n")
    system, turns = convert_messages(body.get("messages"))
    out: JSON = {"messages": turns}
    if system:
        out["system"] = system
    if inf := inference_config(body):
        out["inferenceConfig"] = inf
    if tc := tool_config(body, turns):
        out["toolConfig"] = tc
    return out
