"""Deterministic tool calling for the mock upstreams, and per-request fault markers.

A mock "model" calls a tool when the request offers tools, does not forbid them and the last turn
is the user's: it calls the forced tool or the first one, with arguments built from the schema's
required properties. After a tool result it answers in text quoting that result. This gives tests
a full tool loop without a real model.

Markers in the last user message trigger per-request behaviour (parallel-test safe, unlike
`/_mock/config`): `[[content_filter]]`, `[[output_filter]]`, `[[too_long]]`, `[[guardrail]]`,
`[[stream_error:<exceptionType>]]` (which ones a wire format honours is in its module docstring).
"""

from __future__ import annotations

import hashlib
import re
from typing import Any

_MARKER = re.compile(r"\[\[([a-z_]+)(?::([A-Za-z]+))?\]\]")


def markers(text: str) -> dict[str, str]:
    return {m.group(1): m.group(2) or "" for m in _MARKER.finditer(text)}


def fake_arguments(schema: Any) -> dict[str, Any]:
    """Arguments satisfying the required properties of a JSON schema (object only)."""
    if not isinstance(schema, dict):
        return {}
    props = schema.get("properties") or {}
    out: dict[str, Any] = {}
    for name in schema.get("required") or []:
        p = props.get(name) or {}
        kind = p.get("type")
        if p.get("enum"):
            out[name] = p["enum"][0]
        elif kind == "string":
            out[name] = "mock"
        elif kind in ("integer", "number"):
            out[name] = 1
        elif kind == "boolean":
            out[name] = True
        elif kind == "array":
            out[name] = []
        elif kind == "object":
            out[name] = fake_arguments(p)
        else:
            out[name] = None
    return out


def call_id(seed: str, n: int = 24, prefix: str = "call_") -> str:
    return prefix + hashlib.blake2b(seed.encode(), digest_size=16).hexdigest()[:n]


def openai_tool_choice(body: dict[str, Any]) -> tuple[str, dict[str, Any]] | None:
    """(name, arguments) the mock calls for an OpenAI-format request, or None to answer in text."""
    tools = [t.get("function") for t in body.get("tools") or [] if isinstance(t, dict)]
    tools = [f for f in tools if isinstance(f, dict) and f.get("name")]
    messages = body.get("messages") or []
    choice = body.get("tool_choice")
    if not tools or choice == "none" or not messages or messages[-1].get("role") != "user":
        return None
    name = choice.get("function", {}).get("name") if isinstance(choice, dict) else None
    tool = next((f for f in tools if f["name"] == name), tools[0])
    return tool["name"], fake_arguments(tool.get("parameters"))


def tool_result_text(body: dict[str, Any]) -> str | None:
    """The text of trailing tool results in an OpenAI-format conversation."""
    results = []
    for m in reversed(body.get("messages") or []):
        if m.get("role") != "tool":
            break
        c = m.get("content")
        results.append(c if isinstance(c, str) else str(c))
    return " ".join(reversed(results)) if results else None
