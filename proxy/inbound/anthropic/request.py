"""An Anthropic Messages request (`anthropic.types.MessageCreateParams`) -> a chat completions body.

Validated as the Messages API validates (paths spelled `messages.0.content.1.type`), before any quota is
spent: a GatewayError 400 names the field. Mapping:

* `system` (string or text blocks) -> one system message; `messages` turns -> OpenAI messages:
  user `text`/`image` (base64 -> data URL, url -> image_url)/`document` (base64 PDF -> a file part),
  each `tool_result` -> a `tool` message (before the turn's other blocks, as Anthropic puts them first; an image
  inside a tool result follows in a user message, since OpenAI tool messages carry text only), assistant `text` ->
  content and `tool_use` -> `tool_calls`; `thinking` blocks are dropped (chat completions has no place for them).
* `tools` -> function tools (`input_schema` -> `parameters`); `tool_choice` auto/any/tool/none -> auto/required/
  {function}/none, `disable_parallel_tool_use` -> `parallel_tool_calls: false`.
* `max_tokens`, `temperature`, `top_p`, `stop_sequences` -> `stop`, `metadata.user_id` -> `user`, `stream`;
  for `model: "agent/..."` the other `metadata` entries stay as `metadata` (the agent's template variables).
* `top_k`, `thinking` and `service_tier` are accepted and not forwarded (no chat completions equivalent).
"""

from __future__ import annotations

from typing import Any

import orjson

from proxy.core.anthropic_wire import IMAGE_MEDIA_TYPES
from proxy.core.errors import bad_request
from proxy.inbound.base import JSON, unsupported

FORWARDED = frozenset({"model", "messages", "max_tokens", "system", "stop_sequences", "stream", "temperature",
                       "top_p", "tools", "tool_choice", "metadata"})
IGNORED = frozenset({"top_k", "thinking", "service_tier"})
ALLOWED = FORWARDED | IGNORED
_NUMBER = (int, float)


def invalid(message: str, param: str | None = None) -> Exception:
    return bad_request(f"{param}: {message}" if param else message, param=param)


def to_chat(body: JSON, skipped: list[Exception] | None = None) -> JSON:
    """Validate and translate; the result is a valid chat completions request. With `skipped`, what chat
    completions cannot carry (a field it lacks, a server tool, another block type) is left out and its error kept
    there (for an upstream that speaks the Messages API: Anthropic) instead of raised."""
    for k in body:
        if k not in ALLOWED:
            unsupported(invalid("Extra inputs are not permitted", k), skipped)
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise invalid("Field required" if model is None else "Input should be a non-empty string", "model")
    max_tokens = body.get("max_tokens")
    if max_tokens is None:
        raise invalid("Field required", "max_tokens")
    if type(max_tokens) is not int or max_tokens < 1:
        raise invalid("Input should be an integer greater than or equal to 1", "max_tokens")
    turns = body.get("messages")
    if turns is None:
        raise invalid("Field required", "messages")
    if not isinstance(turns, list) or not turns:
        raise invalid("Input should be a non-empty list", "messages")
    messages: list[JSON] = []
    system = body.get("system")
    if system is not None:
        text = _system_text(system)
        if text:
            messages.append({"role": "system", "content": text})
    for i, turn in enumerate(turns):
        _turn(turn, i, messages, skipped)
    if skipped and all(m["role"] == "system" for m in messages):
        messages.append({"role": "user", "content": ""})  # every turn is blocks only the upstream knows
    out: JSON = {"model": model, "messages": messages, "max_tokens": max_tokens}
    for name, lo, hi in (("temperature", 0.0, 1.0), ("top_p", 0.0, 1.0)):
        v = body.get(name)
        if v is not None:
            if not isinstance(v, _NUMBER) or isinstance(v, bool) or not lo <= v <= hi:
                raise invalid(f"Input should be a number from {lo:g} to {hi:g}", name)
            out[name] = v
    stops = body.get("stop_sequences")
    if stops is not None:
        if not isinstance(stops, list) or not all(isinstance(s, str) for s in stops):
            raise invalid("Input should be a list of strings", "stop_sequences")
        if stops:
            out["stop"] = stops
    tools = body.get("tools")
    if tools is not None:
        if not isinstance(tools, list):
            raise invalid("Input should be a valid list", "tools")
        functions = [f for i, t in enumerate(tools) if (f := _tool(t, i, skipped)) is not None]
        if functions:
            out["tools"] = functions
    choice = body.get("tool_choice")
    if choice is not None:
        _tool_choice(choice, out)
    metadata = body.get("metadata")
    if metadata is not None:
        if not isinstance(metadata, dict):
            raise invalid("Input should be a valid dictionary", "metadata")
        user = metadata.get("user_id")
        if user is not None and not isinstance(user, str):
            raise invalid("Input should be a valid string", "metadata.user_id")
        if user:
            out["user"] = user
        if model.startswith("agent/") and (variables := {k: v for k, v in metadata.items() if k != "user_id"}):
            out["metadata"] = variables  # an agent's template variables (proxy.agents takes them out)
    stream = body.get("stream")
    if stream is not None and not isinstance(stream, bool):
        raise invalid("Input should be a valid boolean", "stream")
    if stream:
        out["stream"] = True
    return out


def _system_text(system: Any) -> str:
    if isinstance(system, str):
        return system
    if not isinstance(system, list):
        raise invalid("Input should be a string or a list of text blocks", "system")
    texts = []
    for j, block in enumerate(system):
        if not isinstance(block, dict) or block.get("type") != "text" or not isinstance(block.get("text"), str):
            raise invalid("Input should be a text block", f"system.{j}")
        texts.append(block["text"])
    return "\n\n".join(t for t in texts if t)


def _turn(turn: Any, i: int, messages: list[JSON], skipped: list[Exception] | None) -> None:
    where = f"messages.{i}"
    if not isinstance(turn, dict):
        raise invalid("Input should be a valid dictionary", where)
    role = turn.get("role")
    if role not in ("user", "assistant"):
        raise invalid("Input should be 'user' or 'assistant'", f"{where}.role")
    content = turn.get("content")
    if isinstance(content, str):
        messages.append({"role": role, "content": content})
        return
    if not isinstance(content, list):
        raise invalid("Field required" if content is None else "Input should be a string or a list of content "
                      "blocks", f"{where}.content")
    if role == "user":
        _user(content, where, messages, skipped)
    else:
        _assistant(content, where, messages, skipped)


def _user(blocks: list[Any], where: str, messages: list[JSON], skipped: list[Exception] | None) -> None:
    parts: list[JSON] = []
    late: list[JSON] = []  # images from tool results: after the tool messages, in a user message
    for j, block in enumerate(blocks):
        at = f"{where}.content.{j}"
        kind = _kind(block, at)
        if kind == "text":
            parts.append({"type": "text", "text": _text(block, at)})
        elif kind == "image":
            parts.append(_image(block, at))
        elif kind == "document":
            if (doc := _document(block, at, skipped)) is not None:
                parts.append(doc)
        elif kind == "tool_result":
            messages.append(_tool_result(block, at, late, skipped))
        else:
            unsupported(invalid(f"Input tag '{kind}' is not a content block the gateway supports in a user turn "
                                "(text, image, document, tool_result)", f"{at}.type"), skipped)
    parts = late + parts
    if not parts:
        return
    if all(p["type"] == "text" for p in parts):
        messages.append({"role": "user", "content": "".join(p["text"] for p in parts) if len(parts) == 1
                         else parts})
    else:
        messages.append({"role": "user", "content": parts})


def _assistant(blocks: list[Any], where: str, messages: list[JSON], skipped: list[Exception] | None) -> None:
    texts: list[str] = []
    calls: list[JSON] = []
    for j, block in enumerate(blocks):
        at = f"{where}.content.{j}"
        kind = _kind(block, at)
        if kind == "text":
            texts.append(_text(block, at))
        elif kind == "tool_use":
            call_id, name, args = block.get("id"), block.get("name"), block.get("input")
            if not isinstance(call_id, str) or not call_id or not isinstance(name, str) or not name:
                raise invalid("a tool_use block needs a string id and name", at)
            if not isinstance(args, dict):
                raise invalid("Input should be a valid dictionary", f"{at}.input")
            calls.append({"id": call_id, "type": "function",
                          "function": {"name": name, "arguments": orjson.dumps(args).decode()}})
        elif kind not in ("thinking", "redacted_thinking"):
            unsupported(invalid(f"Input tag '{kind}' is not a content block the gateway supports in an assistant "
                                "turn (text, tool_use, thinking)", f"{at}.type"), skipped)
    if not texts and not calls:
        return
    msg: JSON = {"role": "assistant", "content": "".join(texts) if texts else None}
    if calls:
        msg["tool_calls"] = calls
    messages.append(msg)


def _kind(block: Any, at: str) -> str:
    if not isinstance(block, dict):
        raise invalid("Input should be a valid dictionary", at)
    kind = block.get("type")
    if not isinstance(kind, str):
        raise invalid("Field required", f"{at}.type")
    return kind


def _text(block: JSON, at: str) -> str:
    text = block.get("text")
    if not isinstance(text, str):
        raise invalid("Input should be a valid string", f"{at}.text")
    return text


def _source(block: JSON, at: str) -> JSON:
    source = block.get("source")
    if not isinstance(source, dict):
        raise invalid("Field required", f"{at}.source")
    return source


def _image(block: JSON, at: str) -> JSON:
    source = _source(block, at)
    if source.get("type") == "base64":
        media, data = source.get("media_type"), source.get("data")
        if media not in IMAGE_MEDIA_TYPES:
            raise invalid("Input should be 'image/jpeg', 'image/png', 'image/gif' or 'image/webp'",
                          f"{at}.source.media_type")
        if not isinstance(data, str) or not data:
            raise invalid("Input should be a non-empty base64 string", f"{at}.source.data")
        return {"type": "image_url", "image_url": {"url": f"data:{media};base64,{data}"}}
    if source.get("type") == "url" and isinstance(source.get("url"), str):
        return {"type": "image_url", "image_url": {"url": source["url"]}}
    raise invalid("Input should be a base64 or url image source", f"{at}.source")


def _document(block: JSON, at: str, skipped: list[Exception] | None) -> JSON | None:
    source = _source(block, at)
    if source.get("type") != "base64" or source.get("media_type") != "application/pdf" \
            or not isinstance(source.get("data"), str):
        unsupported(invalid("only base64 PDF documents are supported through the gateway", f"{at}.source"), skipped)
        return None
    return {"type": "file", "file": {"filename": block.get("title") or "document.pdf",
                                     "file_data": f"data:application/pdf;base64,{source['data']}"}}


def _tool_result(block: JSON, at: str, late: list[JSON], skipped: list[Exception] | None) -> JSON:
    call_id = block.get("tool_use_id")
    if not isinstance(call_id, str) or not call_id:
        raise invalid("Field required", f"{at}.tool_use_id")
    content = block.get("content")
    if content is None or isinstance(content, str):
        text = content or ""
    elif isinstance(content, list):
        texts = []
        for k, part in enumerate(content):
            kind = _kind(part, f"{at}.content.{k}")
            if kind == "text":
                texts.append(_text(part, f"{at}.content.{k}"))
            elif kind == "image":
                late.append(_image(part, f"{at}.content.{k}"))
            else:
                unsupported(invalid(f"Input tag '{kind}' is not supported in a tool_result (text, image)",
                                    f"{at}.content.{k}.type"), skipped)
        text = "\n".join(texts)
    else:
        raise invalid("Input should be a string or a list of content blocks", f"{at}.content")
    return {"role": "tool", "tool_call_id": call_id, "content": text}


def _tool(tool: Any, i: int, skipped: list[Exception] | None) -> JSON | None:
    at = f"tools.{i}"
    if not isinstance(tool, dict):
        raise invalid("Input should be a valid dictionary", at)
    if tool.get("type") not in (None, "custom"):
        unsupported(invalid(f"tool type {tool['type']!r} (a server tool) is not available through the gateway; "
                            "define a custom tool with input_schema", f"{at}.type"), skipped)
        return None
    name, schema = tool.get("name"), tool.get("input_schema")
    if not isinstance(name, str) or not name:
        raise invalid("Field required", f"{at}.name")
    if not isinstance(schema, dict):
        raise invalid("Field required" if schema is None else "Input should be a valid dictionary",
                      f"{at}.input_schema")
    fn: JSON = {"name": name, "parameters": schema}
    if isinstance(tool.get("description"), str):
        fn["description"] = tool["description"]
    return {"type": "function", "function": fn}


def _tool_choice(choice: Any, out: JSON) -> None:
    kind = choice.get("type") if isinstance(choice, dict) else None
    if kind == "auto":
        value: Any = "auto"
    elif kind == "any":
        value = "required"
    elif kind == "none":
        value = "none"
    elif kind == "tool" and isinstance(choice.get("name"), str) and choice["name"]:
        value = {"type": "function", "function": {"name": choice["name"]}}
    else:
        raise invalid("Input should be {type: auto|any|none} or {type: tool, name}", "tool_choice")
    if "tools" not in out:
        return  # nothing to choose from: chat completions rejects a tool_choice without tools
    out["tool_choice"] = value
    if choice.get("disable_parallel_tool_use") is True and kind != "none":
        out["parallel_tool_calls"] = False
