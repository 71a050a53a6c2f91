"""A Responses API request (`openai.types.responses.ResponseCreateParams`) -> a chat completions body.

Validated before any quota is spent: a GatewayError 400 in OpenAI's shape names the parameter (`input[2].call_id`).
Mapping:

* `instructions` -> a leading system message; `input` as a string -> one user message; as items:
  messages (`role` user/system/developer/assistant, `type: message` optional; developer becomes system, as
  not every provider behind the gateway knows that role) whose content is a string or parts (`input_text`,
  `input_image` with an `image_url`, `input_file` with `file_data`; an assistant's `output_text`/`refusal`),
  `function_call` -> the assistant's `tool_calls` (consecutive calls join one assistant message),
  `function_call_output` -> a `tool` message; `reasoning` items are dropped (chat completions has no place for them).
* `tools` (function tools) -> chat function tools; `tool_choice` auto/none/required/{type: function, name};
  `parallel_tool_calls`; `text.format` json_schema/json_object -> `response_format`.
* `max_output_tokens` -> `max_tokens`, `temperature`, `top_p`, `user`/`safety_identifier` -> `user`, `stream`.
* `metadata`, `store`, `previous_response_id` (merged into `input` by the HTTP layer before this runs),
  `include`, `truncation`, `reasoning`, `service_tier`, `prompt_cache_key`, `stream_options` are accepted and not
  forwarded (the Response echoes what applies).
"""

from __future__ import annotations

from typing import Any

from proxy.core.errors import bad_request
from proxy.inbound.base import JSON, unsupported

FORWARDED = frozenset({"model", "input", "instructions", "tools", "tool_choice", "parallel_tool_calls", "text",
                       "max_output_tokens", "temperature", "top_p", "user", "safety_identifier", "stream"})
ACCEPTED = frozenset({"metadata", "store", "previous_response_id", "include", "truncation", "reasoning",
                      "service_tier", "prompt_cache_key", "stream_options", "background", "top_logprobs"})
ALLOWED = FORWARDED | ACCEPTED
_NUMBER = (int, float)
_ROLES = {"user": "user", "system": "system", "developer": "system", "assistant": "assistant"}


def invalid(message: str, param: str) -> Exception:
    return bad_request(f"Invalid '{param}': {message}", param=param)


def to_chat(body: JSON, skipped: list[Exception] | None = None) -> JSON:
    """Validate and translate; the result is a valid chat completions request. With `skipped`, what chat
    completions cannot carry (an unknown field, a hosted tool, another item type) is left out and its error kept
    there (for an upstream that speaks the Responses API natively) instead of raised."""
    for k in body:
        if k not in ALLOWED:
            unsupported(bad_request(f"Unknown parameter: '{k}'.", param=k, code="unknown_parameter"), skipped)
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise bad_request("Missing required parameter: 'model'." if model is None else
                          "Invalid 'model': expected a non-empty string.", param="model",
                          code="missing_required_parameter" if model is None else None)
    if body.get("background"):  # also natively: the gateway answers GET /v1/responses/{id} from its own store
        raise invalid("background responses are not available through the gateway.", "background")
    messages: list[JSON] = []
    instructions = body.get("instructions")
    if instructions is not None:
        if not isinstance(instructions, str):
            raise invalid("expected a string.", "instructions")
        if instructions:
            messages.append({"role": "system", "content": instructions})
    items = body.get("input")
    if isinstance(items, str):
        messages.append({"role": "user", "content": items})
    elif isinstance(items, list):
        for i, item in enumerate(items):
            _item(item, f"input[{i}]", messages, skipped)
    else:
        raise bad_request("Missing required parameter: 'input'." if items is None else
                          "Invalid 'input': expected a string or an array of input items.", param="input")
    if not messages or all(m["role"] == "system" for m in messages):
        if not skipped:
            raise invalid("the input has no message for the model to answer.", "input")
        messages.append({"role": "user", "content": ""})  # the input is all items only the upstream knows
    out: JSON = {"model": model, "messages": messages}
    limit = body.get("max_output_tokens")
    if limit is not None:
        if type(limit) is not int or limit < 1:
            raise invalid("expected an integer greater than or equal to 1.", "max_output_tokens")
        out["max_tokens"] = limit
    for name, hi in (("temperature", 2.0), ("top_p", 1.0)):
        v = body.get(name)
        if v is not None:
            if not isinstance(v, _NUMBER) or isinstance(v, bool) or not 0.0 <= v <= hi:
                raise invalid(f"expected a number from 0 to {hi:g}.", name)
            out[name] = v
    tools = body.get("tools")
    if tools is not None:
        if not isinstance(tools, list):
            raise invalid("expected an array of tools.", "tools")
        functions = [f for i, t in enumerate(tools) if (f := _tool(t, f"tools[{i}]", skipped)) is not None]
        if functions:
            out["tools"] = functions
    choice = body.get("tool_choice")
    if choice is not None:
        value = _tool_choice(choice)
        if "tools" in out:  # chat completions rejects a tool_choice without tools
            out["tool_choice"] = value
    parallel = body.get("parallel_tool_calls")
    if parallel is not None:
        if not isinstance(parallel, bool):
            raise invalid("expected a boolean.", "parallel_tool_calls")
        if "tools" in out:
            out["parallel_tool_calls"] = parallel
    text = body.get("text")
    if text is not None:
        fmt = _text_format(text)
        if fmt is not None:
            out["response_format"] = fmt
    metadata = body.get("metadata")
    if metadata is not None and (not isinstance(metadata, dict)
                                 or not all(isinstance(v, str) for v in metadata.values())):
        raise invalid("expected an object of string values.", "metadata")
    for name in ("store", "stream"):
        if body.get(name) is not None and not isinstance(body[name], bool):
            raise invalid("expected a boolean.", name)
    user = body.get("safety_identifier") or body.get("user")
    if user is not None:
        if not isinstance(user, str):
            raise invalid("expected a string.", "user")
        out["user"] = user
    if body.get("stream"):
        out["stream"] = True
    return out


def _item(item: Any, at: str, messages: list[JSON], skipped: list[Exception] | None) -> None:
    if not isinstance(item, dict):
        raise invalid("expected an object.", at)
    kind = item.get("type")
    if kind is None or kind == "message":
        role = _ROLES.get(item.get("role"))  # type: ignore[arg-type]
        if role is None:
            raise invalid("expected one of 'user', 'system', 'developer' or 'assistant'.", f"{at}.role")
        messages.append({"role": role, "content": _content(item.get("content"), role, f"{at}.content", skipped)})
    elif kind == "function_call":
        call_id, name, args = item.get("call_id"), item.get("name"), item.get("arguments")
        for field, v in (("call_id", call_id), ("name", name), ("arguments", args)):
            if not isinstance(v, str) or (field != "arguments" and not v):
                raise invalid("expected a non-empty string." if field != "arguments" else "expected a string.",
                              f"{at}.{field}")
        call = {"id": call_id, "type": "function", "function": {"name": name, "arguments": args}}
        last = messages[-1] if messages else None
        if last is not None and last["role"] == "assistant" and "tool_calls" in last:
            last["tool_calls"].append(call)
        elif last is not None and last["role"] == "assistant" and isinstance(last["content"], str):
            last["tool_calls"] = [call]  # the text the model wrote before it called
        else:
            messages.append({"role": "assistant", "content": None, "tool_calls": [call]})
    elif kind == "function_call_output":
        call_id, output = item.get("call_id"), item.get("output")
        if not isinstance(call_id, str) or not call_id:
            raise invalid("expected a non-empty string.", f"{at}.call_id")
        if isinstance(output, list):
            output = "".join(p.get("text") or "" for p in output if isinstance(p, dict)
                             and p.get("type") == "input_text")
        if not isinstance(output, str):
            raise invalid("expected a string or an array of input_text parts.", f"{at}.output")
        messages.append({"role": "tool", "tool_call_id": call_id, "content": output})
    elif kind != "reasoning":
        unsupported(invalid(f"input item type '{kind}' is not supported through the gateway (message, "
                            "function_call, function_call_output).", f"{at}.type"), skipped)


def _content(content: Any, role: str, at: str, skipped: list[Exception] | None) -> Any:
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        raise invalid("expected a string or an array of content parts.", at)
    parts: list[JSON] = []
    for j, part in enumerate(content):
        where = f"{at}[{j}]"
        kind = part.get("type") if isinstance(part, dict) else None
        if kind in ("input_text", "output_text"):
            if not isinstance(part.get("text"), str):
                raise invalid("expected a string.", f"{where}.text")
            parts.append({"type": "text", "text": part["text"]})
        elif kind == "refusal" and isinstance(part.get("refusal"), str):
            parts.append({"type": "text", "text": part["refusal"]})
        elif kind == "input_image" and role == "user":
            url = part.get("image_url")
            if not isinstance(url, str) or not url:
                unsupported(invalid("an image is given by image_url (a URL or a data URL); file_id is not "
                                    "supported through the gateway.", f"{where}.image_url"), skipped)
                continue
            image: JSON = {"url": url}
            if part.get("detail") in ("low", "high", "auto"):
                image["detail"] = part["detail"]
            parts.append({"type": "image_url", "image_url": image})
        elif kind == "input_file" and role == "user" and isinstance(part.get("file_data"), str):
            parts.append({"type": "file", "file": {"filename": part.get("filename") or "file",
                                                   "file_data": part["file_data"]}})
        else:
            unsupported(invalid(f"content part type {kind!r} is not supported here (input_text, input_image, "
                                "input_file with file_data; output_text in an assistant message).", f"{where}.type"),
                        skipped)
    if not parts and skipped:
        return ""  # only parts the upstream knows
    if all(p["type"] == "text" for p in parts) and (role != "user" or len(parts) == 1):
        return "".join(p["text"] for p in parts)  # system and assistant turns: plain text for every provider
    return parts


def _tool(tool: Any, at: str, skipped: list[Exception] | None) -> JSON | None:
    if not isinstance(tool, dict):
        raise invalid("expected an object.", at)
    if tool.get("type") != "function":
        unsupported(invalid(f"tool type {tool.get('type')!r} (a hosted tool) is not available through the gateway; "
                            "define a function tool.", f"{at}.type"), skipped)
        return None
    name, params = tool.get("name"), tool.get("parameters")
    if not isinstance(name, str) or not name:
        raise invalid("expected a non-empty string.", f"{at}.name")
    fn: JSON = {"name": name, "parameters": params if isinstance(params, dict) else {"type": "object",
                                                                                     "properties": {}}}
    if params is not None and not isinstance(params, dict):
        raise invalid("expected a JSON schema object.", f"{at}.parameters")
    if isinstance(tool.get("description"), str):
        fn["description"] = tool["description"]
    if isinstance(tool.get("strict"), bool):
        fn["strict"] = tool["strict"]
    return {"type": "function", "function": fn}


def _tool_choice(choice: Any) -> Any:
    if choice in ("auto", "none", "required"):
        return choice
    if isinstance(choice, dict) and choice.get("type") == "function" and isinstance(choice.get("name"), str):
        return {"type": "function", "function": {"name": choice["name"]}}
    raise invalid("expected 'auto', 'none', 'required' or {type: 'function', name}.", "tool_choice")


def _text_format(text: Any) -> JSON | None:
    fmt = text.get("format") if isinstance(text, dict) else None
    if fmt is None:
        if not isinstance(text, dict):
            raise invalid("expected an object.", "text")
        return None
    kind = fmt.get("type") if isinstance(fmt, dict) else None
    if kind == "text":
        return None
    if kind == "json_object":
        return {"type": "json_object"}
    if kind == "json_schema":
        name, schema = fmt.get("name"), fmt.get("schema")
        if not isinstance(name, str) or not name:
            raise invalid("expected a non-empty string.", "text.format.name")
        if not isinstance(schema, dict):
            raise invalid("expected a JSON schema object.", "text.format.schema")
        spec: JSON = {"name": name, "schema": schema}
        for k in ("description", "strict"):
            if fmt.get(k) is not None:
                spec[k] = fmt[k]
        return {"type": "json_schema", "json_schema": spec}
    raise invalid("expected {type: 'text' | 'json_object' | 'json_schema'}.", "text.format.type")
