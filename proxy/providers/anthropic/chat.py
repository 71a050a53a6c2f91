"""OpenAI chat-completions <-> Anthropic Messages: request and (non-stream) response mapping.

Pure functions over JSON dicts. Field names follow `anthropic.types` (MessageCreateParams, Message).
"""

from __future__ import annotations

import time
from typing import Any

import orjson

from proxy.core.anthropic_wire import IMAGE_MEDIA_TYPES, STOP_REASON_TO_FINISH
from proxy.providers.base import JSON, Completion, Usage
from proxy.providers.inputs import parse_data_url, tool_arguments, unsupported

IMAGE_TYPES = IMAGE_MEDIA_TYPES
FINISH = STOP_REASON_TO_FINISH


# ---------------------------------------------------------------- request
def build_request(body: JSON, model: str, stream: bool, default_max_tokens: int) -> JSON:
    if (body.get("n") or 1) != 1:
        raise unsupported("Anthropic returns one choice per request; `n` must be 1", "n")
    system, messages = convert_messages(body.get("messages") or [])
    max_tokens = body.get("max_completion_tokens") or body.get("max_tokens") or default_max_tokens
    out: JSON = {"model": model, "max_tokens": int(max_tokens), "messages": messages}
    if system:
        out["system"] = system
    stop = body.get("stop")
    stops = [s for s in ([stop] if isinstance(stop, str) else stop or ()) if s.strip()]
    if stops:  # Anthropic rejects whitespace-only stop sequences (OpenAI clients often send "\n")
        out["stop_sequences"] = stops
    if body.get("temperature") is not None:
        out["temperature"] = min(float(body["temperature"]), 1.0)  # OpenAI's range is 0-2, Anthropic's 0-1
    if body.get("top_p") is not None and body["top_p"] < 1:
        # top_p=1 is the no-op default many clients send; newer Claude models reject it next to temperature
        out["top_p"] = body["top_p"]
    tools = body.get("tools")
    if tools:
        out["tools"] = [convert_tool(t, i) for i, t in enumerate(tools)]
        choice = convert_tool_choice(body.get("tool_choice"), body.get("parallel_tool_calls"))
        if choice is not None:
            out["tool_choice"] = choice
    if isinstance(body.get("user"), str) and body["user"]:
        out["metadata"] = {"user_id": body["user"]}
    if stream:
        out["stream"] = True
    return out


def convert_messages(messages: list[Any]) -> tuple[str | list[JSON] | None, list[JSON]]:
    """OpenAI messages -> (`system`, alternating `messages`); same-role neighbours are merged."""
    system: list[JSON] = []
    turns: list[JSON] = []
    for i, m in enumerate(messages):
        if not isinstance(m, dict):
            raise unsupported(f"messages[{i}] must be an object", f"messages[{i}]")
        role = m.get("role")
        if role in ("system", "developer"):
            system += text_blocks(m.get("content"), f"messages[{i}].content")
        elif role == "user":
            _append(turns, "user", user_blocks(m.get("content"), f"messages[{i}].content"))
        elif role == "assistant":
            _append(turns, "assistant", assistant_blocks(m, i))
        elif role == "tool":
            _append(turns, "user", [tool_result(m, i)])
        else:
            raise unsupported(f"messages[{i}].role {role!r} is not supported by Anthropic", f"messages[{i}].role")
    if turns and turns[-1]["role"] == "assistant":
        _strip_prefill(turns[-1]["content"])
    return _collapse_system(system), [_collapse(t) for t in turns]


def _append(turns: list[JSON], role: str, blocks: list[JSON]) -> None:
    if not blocks:
        return  # an empty message adds nothing; Anthropic rejects empty content
    if turns and turns[-1]["role"] == role:
        turns[-1]["content"].extend(blocks)
    else:
        turns.append({"role": role, "content": list(blocks)})


def _collapse(turn: JSON) -> JSON:
    blocks = turn["content"]
    if turn["role"] == "user":
        # tool results must open the user turn that answers a tool_use; text may follow them
        blocks.sort(key=lambda b: b.get("type") != "tool_result")
    if len(blocks) == 1 and blocks[0].keys() == {"type", "text"}:
        return {"role": turn["role"], "content": blocks[0]["text"]}
    return turn


def _collapse_system(blocks: list[JSON]) -> str | list[JSON] | None:
    if not blocks:
        return None
    if all(b.keys() == {"type", "text"} for b in blocks):
        return "\n\n".join(b["text"] for b in blocks)
    return blocks  # keep blocks so `cache_control` marks survive


def _strip_prefill(blocks: list[JSON]) -> None:
    """Anthropic rejects a final assistant (prefill) turn that ends in whitespace."""
    if blocks and blocks[-1].get("type") == "text":
        blocks[-1]["text"] = blocks[-1]["text"].rstrip()
        if not blocks[-1]["text"]:
            blocks.pop()


def text_block(part: JSON) -> JSON:
    block: JSON = {"type": "text", "text": part.get("text") or ""}
    if part.get("cache_control"):
        block["cache_control"] = part["cache_control"]  # prompt caching marks, as Anthropic spells them
    return block


def text_blocks(content: Any, where: str) -> list[JSON]:
    if content is None:
        return []
    if isinstance(content, str):
        return [{"type": "text", "text": content}] if content else []
    if not isinstance(content, list):
        raise unsupported(f"{where} must be a string or a list of parts", where)
    out = []
    for j, part in enumerate(content):
        if not isinstance(part, dict) or part.get("type") not in ("text", "refusal"):
            raise unsupported(f"{where}[{j}]: only text parts are allowed here", f"{where}[{j}]")
        text = part.get("text") if part.get("type") == "text" else part.get("refusal")
        if text:
            out.append(text_block({**part, "text": text}))
    return out


def user_blocks(content: Any, where: str) -> list[JSON]:
    if not isinstance(content, list):
        return text_blocks(content, where)
    out = []
    for j, part in enumerate(content):
        kind = part.get("type") if isinstance(part, dict) else None
        if kind == "text":
            if part.get("text"):
                out.append(text_block(part))
        elif kind == "image_url":
            out.append(image_block(part.get("image_url"), f"{where}[{j}]"))
        elif kind == "file":
            out.append(document_block(part.get("file") or {}, f"{where}[{j}]"))
        else:
            raise unsupported(f"{where}[{j}]: content part type {kind!r} is not supported by Anthropic",
                          f"{where}[{j}].type")
    return out


def image_block(image: Any, where: str) -> JSON:
    url = image.get("url") if isinstance(image, dict) else image
    if not isinstance(url, str):
        raise unsupported(f"{where}.image_url.url is required", where)
    if url.startswith("data:"):
        media_type, data = parse_data_url(url, where)
        if media_type not in IMAGE_TYPES:
            raise unsupported(f"{where}: image type {media_type!r} is not supported (jpeg, png, gif, webp)",
                          where)
        return {"type": "image", "source": {"type": "base64", "media_type": media_type, "data": data}}
    if url.startswith(("https://", "http://")):
        return {"type": "image", "source": {"type": "url", "url": url}}
    raise unsupported(f"{where}: image_url must be an http(s) or data URL", where)


def document_block(file: JSON, where: str) -> JSON:
    data = file.get("file_data")
    if not isinstance(data, str) or not data.startswith("data:"):
        raise unsupported(f"{where}: only inline files (file_data as a data URL) are supported", where)
    media_type, b64 = parse_data_url(data, where)
    if media_type != "application/pdf":
        raise unsupported(f"{where}: file type {media_type!r} is not supported (application/pdf)", where)
    return {"type": "document", "source": {"type": "base64", "media_type": media_type, "data": b64}}


def assistant_blocks(m: JSON, i: int) -> list[JSON]:
    out = text_blocks(m.get("content"), f"messages[{i}].content")
    for j, call in enumerate(m.get("tool_calls") or ()):
        where = f"messages[{i}].tool_calls[{j}]"
        fn = call.get("function") if isinstance(call, dict) else None
        if not isinstance(fn, dict) or not fn.get("name") or not call.get("id"):
            raise unsupported(f"{where} needs an id and function.name", where)
        out.append({"type": "tool_use", "id": call["id"], "name": fn["name"],
                    "input": parse_arguments(fn.get("arguments"), where)})
    return out


def parse_arguments(args: Any, where: str) -> JSON:
    """OpenAI's arguments JSON string -> the input object Anthropic wants."""
    try:
        value = tool_arguments(args)
    except ValueError:
        raise unsupported(f"{where}.function.arguments is not valid JSON", where) from None
    if not isinstance(value, dict):
        raise unsupported(f"{where}.function.arguments must be a JSON object", where)
    return value


def tool_result(m: JSON, i: int) -> JSON:
    if not m.get("tool_call_id"):
        raise unsupported(f"messages[{i}].tool_call_id is required", f"messages[{i}].tool_call_id")
    block: JSON = {"type": "tool_result", "tool_use_id": m["tool_call_id"]}
    content = m.get("content")
    if isinstance(content, list):
        content = user_blocks(content, f"messages[{i}].content")
    if content:
        block["content"] = content
    return block


def convert_tool(tool: Any, i: int) -> JSON:
    fn = tool.get("function") if isinstance(tool, dict) and tool.get("type") == "function" else None
    if not isinstance(fn, dict) or not fn.get("name"):
        raise unsupported(f"tools[{i}]: only function tools with a name are supported", f"tools[{i}]")
    schema = dict(fn.get("parameters") or {"type": "object", "properties": {}})
    schema.setdefault("type", "object")
    out: JSON = {"name": fn["name"], "input_schema": schema}
    if fn.get("description"):
        out["description"] = fn["description"]
    return out


def convert_tool_choice(choice: Any, parallel: Any) -> JSON | None:
    if choice is None or choice == "auto":
        out: JSON | None = {"type": "auto"} if choice or parallel is False else None
    elif choice == "none":
        out = {"type": "none"}
    elif choice == "required":
        out = {"type": "any"}
    elif isinstance(choice, dict) and (choice.get("function") or {}).get("name"):
        out = {"type": "tool", "name": choice["function"]["name"]}
    else:
        raise unsupported("tool_choice must be auto, none, required or {type: function, function: {name}}",
                      "tool_choice")
    if out is not None and parallel is False and out["type"] != "none":
        out["disable_parallel_tool_use"] = True
    return out


# ---------------------------------------------------------------- response
def usage_from(u: Any) -> Usage:
    """Anthropic counts cache reads and writes apart from `input_tokens`; OpenAI's prompt includes them."""
    u = u if isinstance(u, dict) else {}
    read = int(u.get("cache_read_input_tokens") or 0)
    write = int(u.get("cache_creation_input_tokens") or 0)
    return Usage(prompt_tokens=int(u.get("input_tokens") or 0) + read + write,
                 completion_tokens=int(u.get("output_tokens") or 0),
                 cached_tokens=read, cache_write_tokens=write)


def tool_call(block: JSON) -> JSON:
    return {"id": block["id"], "type": "function",
            "function": {"name": block["name"], "arguments": orjson.dumps(block.get("input") or {}).decode()}}


def convert_response(d: Any, model: str) -> Completion:
    if not isinstance(d, dict) or not isinstance(d.get("content"), list):
        raise ValueError("no `content` in the Anthropic response")
    texts = [b.get("text") or "" for b in d["content"] if b.get("type") == "text"]
    calls = [tool_call(b) for b in d["content"] if b.get("type") == "tool_use"]
    message: JSON = {"role": "assistant", "content": "".join(texts) if texts or not calls else None,
                     "refusal": None}
    if calls:
        message["tool_calls"] = calls
    finish = FINISH.get(d.get("stop_reason") or "", "stop")
    usage = usage_from(d.get("usage"))
    answered = d.get("model") or model
    out = {"id": d.get("id") or "msg", "object": "chat.completion", "created": int(time.time()),
           "model": answered,
           "choices": [{"index": 0, "message": message, "logprobs": None, "finish_reason": finish}],
           "usage": usage.to_openai()}
    return Completion(body=orjson.dumps(out), usage=usage, model=answered, finish_reason=finish, data=out)
