"""What the OpenAI Responses API (POST /v1/responses) rejects, in its words (message, param, code).

Field names come from the installed `openai` SDK's TypedDicts (ResponseCreateParamsBase, the input
item and content part params, FunctionToolParam), so they cannot drift from the SDK; without the SDK
(a dev extra) only the structure is checked. Errors are raised as `abort(<OpenAI 400 response>)`.

This mock stores nothing, so anything pointing at stored state (`previous_response_id`, an
`item_reference`) is "not found": a gateway that forwards such ids unexpanded is caught.
"""

from __future__ import annotations

import functools
import re
import typing
from typing import Any

from mockupstream.openai import error
from mockupstream.server import abort

ROLES = ("assistant", "system", "developer", "user")
# content part types by role: the API rejects input_text in assistant history and output_text in user turns
PARTS = {"assistant": ("output_text", "refusal"), "user": ("input_text", "input_image", "input_file")}
TOOL_CHOICES = ("none", "auto", "required")
MIN_OUTPUT_TOKENS = 16  # the API's floor for max_output_tokens
_LITERAL = re.compile(r"""Literal\[['"]([a-z_]+)['"]\]""")
# top-level fields and the JSON types the API accepts for them (null is accepted for all but these)
TYPES: dict[str, tuple[type, ...]] = {
    "model": (str,), "instructions": (str,), "max_output_tokens": (int,), "temperature": (float,),
    "top_p": (float,), "stream": (bool,), "store": (bool,), "parallel_tool_calls": (bool,),
    "metadata": (dict,), "tools": (list,), "text": (dict,), "previous_response_id": (str,),
}
NOT_NULL = frozenset({"model", "stream"})


def _literal(td: Any) -> str:
    note = td.__annotations__["type"]
    found = _LITERAL.search(str(getattr(note, "__forward_arg__", note)))
    return found.group(1) if found else ""


def _merge(tds: tuple[Any, ...]) -> dict[str, frozenset[str]]:
    """Allowed keys per `type` literal; TypedDicts sharing a type (the three message shapes) merge."""
    out: dict[str, set[str]] = {}
    for td in tds:
        out.setdefault(_literal(td), set()).update(td.__annotations__)
    return {k: frozenset(v) for k, v in out.items()}


@functools.cache
def sdk_schema() -> dict[str, Any] | None:
    """{"params", "items", "parts", "function_tool"} key sets read from the `openai` SDK, or None."""
    try:
        from openai.types.responses import FunctionToolParam, ResponseInputContentParam, ResponseInputItemParam
        from openai.types.responses.response_create_params import ResponseCreateParamsBase
        from openai.types.responses.response_output_message_param import Content
    except ImportError:  # pragma: no cover - the SDK is a dev dependency
        return None
    parts = typing.get_args(ResponseInputContentParam) + typing.get_args(Content)
    return {"params": frozenset(ResponseCreateParamsBase.__annotations__) | {"stream"},  # stream: the subclasses'
            "items": _merge(typing.get_args(ResponseInputItemParam)), "parts": _merge(parts),
            "function_tool": frozenset(FunctionToolParam.__annotations__)}


def bad(message: str, param: str | None, code: str | None = None) -> Exception:
    return abort(error(400, message, code=code, param=param))


NAMES: dict[type, str] = {bool: "a boolean", int: "an integer", float: "a decimal", str: "a string",
                          list: "an array", dict: "an object", type(None): "null"}


def _type(v: Any, types: tuple[type, ...], param: str) -> None:
    """The API's invalid_type error unless `v` is one of `types` (JSON true is not a number here)."""
    if type(v) not in types and not (type(v) is int and float in types):
        raise bad(f"Invalid type for '{param}': expected {NAMES[types[0]]}, but got {NAMES.get(type(v), 'null')} "
                  "instead.", param, "invalid_type")


def _choices(values: tuple[str, ...] | list[str]) -> str:
    """'a', 'b', and 'c' (the API's list of supported values, with the serial comma)."""
    quoted = [f"'{v}'" for v in values]
    if len(quoted) < 3:
        return " and ".join(quoted)
    return f"{', '.join(quoted[:-1])}, and {quoted[-1]}"


def _value(v: Any, allowed: tuple[str, ...] | list[str], param: str) -> None:
    if v not in allowed:
        raise bad(f"Invalid value: '{v}'. Supported values are: {_choices(allowed)}.", param, "invalid_value")


def _required(obj: dict[str, Any], key: str, path: str, types: tuple[type, ...] = (str,)) -> None:
    if obj.get(key) is None:
        raise bad(f"Missing required parameter: '{path}.{key}'.", f"{path}.{key}", "missing_required_parameter")
    _type(obj[key], types, f"{path}.{key}")


def _known(obj: dict[str, Any], allowed: frozenset[str] | None, path: str) -> None:
    for k in obj:
        if allowed is not None and k not in allowed:
            name = f"{path}.{k}" if path else k
            raise bad(f"Unknown parameter: '{name}'.", name, "unknown_parameter")


def validate(body: Any) -> None:
    """Raise the API's 400 for anything it would reject in a create-response request."""
    schema = sdk_schema()
    if not isinstance(body, dict):
        raise bad("Invalid type for request body: expected an object.", None, "invalid_type")
    _known(body, schema["params"] if schema else None, "")
    for key in ("model", "input"):
        if body.get(key) is None:
            raise bad(f"Missing required parameter: '{key}'.", key, "missing_required_parameter")
    for key, types in TYPES.items():
        if key in body and (body[key] is not None or key in NOT_NULL):
            _type(body[key], types, key)
    if body.get("previous_response_id") is not None:
        raise bad(f"Previous response with id '{body['previous_response_id']}' not found.", "previous_response_id",
                  "previous_response_not_found")
    limit = body.get("max_output_tokens")
    if limit is not None and limit < MIN_OUTPUT_TOKENS:
        raise bad(f"Invalid 'max_output_tokens': integer below minimum value. Expected a value >= "
                  f"{MIN_OUTPUT_TOKENS}, but got {limit} instead.", "max_output_tokens", "integer_below_min_value")
    for key, top in (("temperature", 2), ("top_p", 1)):
        v = body.get(key)
        if v is not None and v > top:
            raise bad(f"Invalid '{key}': decimal above maximum value. Expected a value <= {top}, but got {v} "
                      "instead.", key, "decimal_above_max_value")
        if v is not None and v < 0:
            raise bad(f"Invalid '{key}': decimal below minimum value. Expected a value >= 0, but got {v} "
                      "instead.", key, "decimal_below_min_value")
    _input(body["input"], schema)
    names = _tools(body.get("tools") or [], schema)
    _tool_choice(body.get("tool_choice"), names)


def _input(inp: Any, schema: dict[str, Any] | None) -> None:
    _type(inp, (str, list), "input")
    if isinstance(inp, str):
        return
    if not inp:
        raise bad("Invalid 'input': empty array. Expected an array with minimum length 1, but got an empty array "
                  "instead.", "input", "empty_array")
    items = schema["items"] if schema else None
    calls: list[str] = []  # function_call ids, each must be answered by a function_call_output
    answered: set[str] = set()
    for i, item in enumerate(inp):
        path = f"input[{i}]"
        _type(item, (dict,), path)
        kind = item.get("type") or ("message" if "role" in item else None)
        if kind is None:
            raise bad(f"Missing required parameter: '{path}.type'.", f"{path}.type", "missing_required_parameter")
        if items is not None and kind not in items:
            _value(kind, sorted(items), f"{path}.type")
        _known(item, items.get(kind) if items else None, path)
        if kind == "message":
            _message(item, path, schema)
        elif kind == "function_call":
            for key in ("call_id", "name", "arguments"):
                _required(item, key, path)
            calls.append(item["call_id"])
        elif kind == "function_call_output":
            _required(item, "call_id", path)
            _required(item, "output", path, (str, list))
            if item["call_id"] not in calls:
                raise bad(f"No tool call found for function call output with call_id {item['call_id']}.", "input")
            answered.add(item["call_id"])
        elif kind == "item_reference":
            raise bad(f"Item with id '{item.get('id')}' not found.", "input")
    for cid in calls:
        if cid not in answered:
            raise bad(f"No tool output found for function call {cid}.", "input")


def _message(item: dict[str, Any], path: str, schema: dict[str, Any] | None) -> None:
    _required(item, "role", path)
    _value(item["role"], ROLES, f"{path}.role")
    content = item.get("content")
    if content is None:
        raise bad(f"Missing required parameter: '{path}.content'.", f"{path}.content", "missing_required_parameter")
    _type(content, (str, list), f"{path}.content")
    allowed = PARTS["assistant" if item["role"] == "assistant" else "user"]
    for j, part in enumerate(content if isinstance(content, list) else ()):
        ppath = f"{path}.content[{j}]"
        _type(part, (dict,), ppath)
        _value(part.get("type"), allowed, f"{ppath}.type")
        _known(part, schema["parts"].get(part["type"]) if schema else None, ppath)
        if part["type"] in ("input_text", "output_text"):
            _required(part, "text", ppath)
        elif part["type"] == "refusal":
            _required(part, "refusal", ppath)
        elif part["type"] == "input_image" and not (part.get("image_url") or part.get("file_id")):
            raise bad(f"Missing required parameter: '{ppath}.image_url'.", f"{ppath}.image_url",
                      "missing_required_parameter")


def _tools(tools: list[Any], schema: dict[str, Any] | None) -> set[str]:
    names: set[str] = set()
    for i, tool in enumerate(tools):
        path = f"tools[{i}]"
        _type(tool, (dict,), path)
        _required(tool, "type", path)
        if tool["type"] != "function":
            continue  # hosted tools (web_search, file_search, ...) are taken as they are
        _required(tool, "name", path)  # before unknown keys: a chat-style {"function": {...}} is "missing name"
        _known(tool, schema["function_tool"] if schema else None, path)
        if tool.get("parameters") is not None:
            _type(tool["parameters"], (dict,), f"{path}.parameters")
        names.add(tool["name"])
    return names


def _tool_choice(choice: Any, names: set[str]) -> None:
    if choice is None:
        return
    if isinstance(choice, str):
        _value(choice, TOOL_CHOICES, "tool_choice")
        return
    _type(choice, (dict,), "tool_choice")
    if choice.get("type") == "function":
        _required(choice, "name", "tool_choice")  # a chat-style {"function": {"name"}} lacks it
        if choice["name"] not in names:
            raise bad(f"Tool choice '{choice['name']}' not found in 'tools' parameter.", "tool_choice")
