"""What the Anthropic Messages API rejects, checked the way it checks (messages and wording).

Field names come from the installed `anthropic` SDK's TypedDicts (MessageCreateParams, the
*BlockParam types), so they cannot drift from the SDK; without the SDK (it is a dev extra) only the
structure is checked. Errors are raised as `abort(<Anthropic 400 response>)`.
"""

from __future__ import annotations

import base64
import binascii
import functools
import re
from collections.abc import Callable
from typing import Any

from aiohttp import web

from mockupstream.server import abort

# sampling fields the Messages API documents for anthropic-version 2023-06-01; SDK 2.x no longer types them
SAMPLING = {"temperature": 1.0, "top_p": 1.0}
CREATE_EXTRA = frozenset({"stream", "top_k", *SAMPLING})  # create fields the SDK types elsewhere or no longer
IMAGE_TYPES = frozenset({"image/jpeg", "image/png", "image/gif", "image/webp"})
TOOL_NAME = re.compile(r"^[a-zA-Z0-9_-]{1,128}$")
BLOCKS = {"user": ("text", "image", "document", "tool_result"), "assistant": ("text", "tool_use")}

ErrorFn = Callable[[int, str], web.Response]


@functools.cache
def sdk_keys(name: str) -> tuple[frozenset[str], frozenset[str]] | None:
    """(required, allowed) keys of an `anthropic.types` TypedDict, or None without the SDK.

    MessageCreateParams is a union (stream or not) in the SDK, so its base TypedDict is read."""
    try:
        import anthropic.types as t
        from anthropic.types import message_create_params
    except ImportError:  # pragma: no cover - the SDK is a dev dependency
        return None
    td = message_create_params.MessageCreateParamsBase if name == "MessageCreateParams" else getattr(t, name)
    notes = {k: str(getattr(v, "__forward_arg__", v)) for k, v in td.__annotations__.items()}
    return frozenset(k for k, v in notes.items() if v.startswith("Required[")), frozenset(notes)


@functools.cache
def server_tools() -> dict[str, str]:
    """Server tool `type` -> its `anthropic.types` TypedDict name, from the SDK's ToolUnionParam (empty without
    the SDK)."""
    try:
        import typing

        import anthropic.types as t
    except ImportError:  # pragma: no cover - the SDK is a dev dependency
        return {}
    out: dict[str, str] = {}
    for td in typing.get_args(t.ToolUnionParam):
        kind = td.__annotations__.get("type")
        if td.__name__ != "ToolParam" and kind is not None and hasattr(t, td.__name__):
            for literal in re.findall(r"'([^']+)'", str(getattr(kind, "__forward_arg__", kind))):
                out[literal] = td.__name__
    return out


class Checker:
    def __init__(self, error: ErrorFn) -> None:
        self.error = error

    def bad(self, message: str) -> Exception:
        return abort(self.error(400, message))

    def keys(self, obj: Any, typed: str, path: str) -> None:
        if not isinstance(obj, dict):
            raise self.bad(f"{path}: Input should be a valid dictionary")
        keys = sdk_keys(typed)
        if keys is None:
            return
        required, allowed = keys
        for k in obj:
            if k not in allowed:
                raise self.bad(f"{_join(path, k)}: Extra inputs are not permitted")
        for k in sorted(required - obj.keys()):
            raise self.bad(f"{_join(path, k)}: Field required")

    def fields(self, body: Any, typed: str, extra: frozenset[str], required: tuple[str, ...]) -> None:
        """Top-level keys against the SDK's request TypedDict (+ `extra`), the required ones and model."""
        if not isinstance(body, dict):
            raise self.bad("Input should be a valid dictionary")
        keys = sdk_keys(typed)
        allowed = (keys[1] | extra) if keys else body.keys()
        for k in body:
            if k not in allowed:
                raise self.bad(f"{k}: Extra inputs are not permitted")
        for k in required:
            if k not in body:
                raise self.bad(f"{k}: Field required")
        if not isinstance(body["model"], str) or not body["model"]:
            raise self.bad("model: Input should be a valid string")

    def body(self, body: Any) -> None:
        """A Messages create request."""
        self.fields(body, "MessageCreateParams", CREATE_EXTRA, ("max_tokens", "messages", "model"))
        if not _is_int(body["max_tokens"]) or body["max_tokens"] < 0:
            raise self.bad("max_tokens: Input should be a valid integer greater than or equal to 0")
        if "stream" in body and not isinstance(body["stream"], bool):
            raise self.bad("stream: Input should be a valid boolean")
        for k, top in SAMPLING.items():
            v = body.get(k)
            if k in body and (not isinstance(v, int | float) or isinstance(v, bool) or not 0 <= v <= top):
                raise self.bad(f"{k}: Input should be a number between 0 and {top:g}")
        stops = body.get("stop_sequences")
        if stops is not None and (not isinstance(stops, list) or not all(isinstance(s, str) for s in stops)):
            raise self.bad("stop_sequences: Input should be a valid list of strings")
        if stops and not all(s.strip() for s in stops):
            raise self.bad("stop_sequences: each stop sequence must contain non-whitespace")
        if "metadata" in body:
            self.keys(body["metadata"], "MetadataParam", "metadata")
        self.conversation(body)

    def count_tokens_body(self, body: Any) -> None:
        """A count_tokens request: a create's conversation fields, without max_tokens, stream or sampling."""
        self.fields(body, "MessageCountTokensParams", frozenset(), ("messages", "model"))
        self.conversation(body)

    def conversation(self, body: dict[str, Any]) -> None:
        """What create and count_tokens share: system, tools, tool_choice and the messages."""
        self.system(body.get("system"))
        names = self.tools(body.get("tools"))
        self.tool_choice(body.get("tool_choice"), names)
        self.messages(body["messages"], tools=bool(body.get("tools")))

    def system(self, system: Any) -> None:
        if system is None or isinstance(system, str):
            return
        if not isinstance(system, list):
            raise self.bad("system: Input should be a valid string or a list of text blocks")
        for j, block in enumerate(system):
            self.block(block, f"system.{j}", ("text",))

    def tools(self, tools: Any) -> set[str]:
        if tools is None:
            return set()
        if not isinstance(tools, list):
            raise self.bad("tools: Input should be a valid list")
        names = set()
        server = server_tools()
        for i, tool in enumerate(tools):
            typed = server.get(tool.get("type")) if isinstance(tool, dict) else None
            if typed is not None:  # a server tool (web_search, code_execution, ...): Anthropic runs it
                self.keys(tool, typed, f"tools.{i}.{tool['type']}")
                names.add(tool.get("name"))
                continue
            self.keys(tool, "ToolParam", f"tools.{i}")
            if not isinstance(tool.get("name"), str) or not TOOL_NAME.match(tool["name"]):
                raise self.bad(f"tools.{i}.custom.name: String should match pattern '^[a-zA-Z0-9_-]{{1,128}}$'")
            schema = tool.get("input_schema")
            if not isinstance(schema, dict) or schema.get("type") != "object":
                raise self.bad(f"tools.{i}.custom.input_schema.type: Input should be 'object'")
            if tool["name"] in names:
                raise self.bad("tools: Tool names must be unique.")
            names.add(tool["name"])
        return names

    def tool_choice(self, choice: Any, names: set[str]) -> None:
        if choice is None:
            return
        kinds = {"auto": "ToolChoiceAutoParam", "any": "ToolChoiceAnyParam", "tool": "ToolChoiceToolParam",
                 "none": "ToolChoiceNoneParam"}
        kind = choice.get("type") if isinstance(choice, dict) else None
        if kind not in kinds:
            raise self.bad("tool_choice: Input tag does not match any of the expected tags: 'auto', 'any', "
                           "'tool', 'none'")
        self.keys(choice, kinds[kind], f"tool_choice.{kind}")
        if kind == "tool" and choice.get("name") not in names:
            raise self.bad(f"tool_choice.tool.name: Tool '{choice.get('name')}' not found in tools")

    def messages(self, messages: Any, tools: bool) -> None:
        if not isinstance(messages, list) or not messages:
            raise self.bad("messages: at least one message is required")
        pending: list[str] = []  # tool_use ids the next (user) turn must answer
        uses_tools = False
        for i, m in enumerate(messages):
            path = f"messages.{i}"
            if not isinstance(m, dict) or m.get("role") not in BLOCKS:
                raise self.bad(f"{path}.role: Input should be 'user' or 'assistant'")
            for k in m:
                if k not in ("role", "content"):
                    raise self.bad(f"{path}.{k}: Extra inputs are not permitted")
            role, content = m["role"], m.get("content")
            if i and messages[i - 1].get("role") == role:
                raise self.bad(f'messages: roles must alternate between "user" and "assistant", '
                               f'but found multiple "{role}" roles in a row')
            last = i == len(messages) - 1
            if content == "" or content == [] or content is None:
                if not (last and role == "assistant"):
                    raise self.bad(f"{path}: all messages must have non-empty content except for the optional "
                                   "final assistant message")
                continue
            blocks = [{"type": "text", "text": content}] if isinstance(content, str) else content
            if not isinstance(blocks, list):
                raise self.bad(f"{path}.content: Input should be a valid string or list")
            for j, block in enumerate(blocks):
                self.block(block, f"{path}.content.{j}", BLOCKS[role])
            uses_tools = uses_tools or any(b["type"] in ("tool_use", "tool_result") for b in blocks)
            results = [b["tool_use_id"] for b in blocks if b["type"] == "tool_result"]
            if any(b["type"] == "tool_result" for b in blocks[len(results):]):
                raise self.bad(f"{path}: tool_result blocks must come first in the user message content, "
                               "before any other content")
            for j, rid in enumerate(results):
                if rid not in pending:
                    raise self.bad(f"{path}.content.{j}: unexpected `tool_use_id` found in `tool_result` "
                                   f"blocks: {rid}. Each `tool_result` block must have a corresponding "
                                   "`tool_use` block in the previous message.")
            missing = [p for p in pending if p not in results]
            if missing:
                raise self.bad(f"{path}: `tool_use` ids were found without `tool_result` blocks immediately "
                               f"after: {', '.join(missing)}. Each `tool_use` block must have a corresponding "
                               "`tool_result` block in the next message.")
            pending = [b["id"] for b in blocks if b["type"] == "tool_use"]
            tail = blocks[-1].get("text") if blocks[-1]["type"] == "text" else None
            if last and role == "assistant" and tail is not None and tail != tail.rstrip():
                raise self.bad("final assistant content cannot end with trailing whitespace")
        if uses_tools and not tools:
            raise self.bad("Requests which include `tool_use` or `tool_result` blocks must define tools.")

    def block(self, block: Any, path: str, allowed: tuple[str, ...]) -> None:
        kind = block.get("type") if isinstance(block, dict) else None
        if kind not in allowed:
            raise self.bad(f"{path}: Input tag '{kind}' found using 'type' does not match any of the expected "
                           f"tags: {', '.join(repr(a) for a in allowed)}")
        typed = {"text": "TextBlockParam", "image": "ImageBlockParam", "document": "DocumentBlockParam",
                 "tool_use": "ToolUseBlockParam", "tool_result": "ToolResultBlockParam"}[kind]
        self.keys(block, typed, f"{path}.{kind}")
        if kind == "text" and (not isinstance(block.get("text"), str) or not block["text"]):
            raise self.bad(f"{path}.text: text content blocks must be non-empty")
        elif kind in ("image", "document"):
            self.source(block.get("source"), f"{path}.{kind}.source", kind)
        elif kind == "tool_use":
            if not isinstance(block.get("id"), str) or not isinstance(block.get("name"), str):
                raise self.bad(f"{path}.tool_use: id and name must be strings")
            if not isinstance(block.get("input"), dict):
                raise self.bad(f"{path}.tool_use.input: Input should be a valid dictionary")
        elif kind == "tool_result":
            content = block.get("content")
            if isinstance(content, list):
                for k, inner in enumerate(content):
                    self.block(inner, f"{path}.tool_result.content.{k}", ("text", "image"))
            elif content is not None and not isinstance(content, str):
                raise self.bad(f"{path}.tool_result.content: Input should be a valid string or list")

    def source(self, source: Any, path: str, kind: str) -> None:
        stype = source.get("type") if isinstance(source, dict) else None
        if stype == "url":
            self.keys(source, "URLImageSourceParam", f"{path}.url")
            if not str(source.get("url", "")).startswith(("http://", "https://")):
                raise self.bad(f"{path}.url.url: URL must be http or https")
            return
        if stype != "base64":
            raise self.bad(f"{path}: Input tag '{stype}' found using 'type' does not match any of the expected "
                           "tags: 'base64', 'url'")
        self.keys(source, "Base64ImageSourceParam" if kind == "image" else "Base64PDFSourceParam",
                  f"{path}.base64")
        media = source.get("media_type")
        if (kind == "image" and media not in IMAGE_TYPES) or (kind == "document" and media != "application/pdf"):
            raise self.bad(f"{path}.base64.media_type: Input should be "
                           + ("'image/jpeg', 'image/png', 'image/gif' or 'image/webp'" if kind == "image"
                              else "'application/pdf'"))
        try:
            base64.b64decode(source.get("data") or "", validate=True)
        except (binascii.Error, ValueError, TypeError):
            raise self.bad(f"{path}.base64.data: invalid base64 data") from None


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)
