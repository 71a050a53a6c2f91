"""What the Gemini API rejects in a generateContent request, with Google's wording.

Nested objects are validated with the installed `google-genai` SDK's pydantic models (camelCase
aliases, `extra="forbid"`: an unknown name is rejected as Google does); without the SDK (a dev extra)
only the structure is checked. Errors are raised as `abort(<Google 400 response>)`.
"""

from __future__ import annotations

import base64
import binascii
import functools
import re
from collections.abc import Callable
from typing import Any

from aiohttp import web
from pydantic import ValidationError

from mockupstream.server import abort

# top-level GenerateContentRequest fields (what google.genai's _GenerateContentParameters_to_mldev emits)
TOP_LEVEL = frozenset({"contents", "systemInstruction", "tools", "toolConfig", "safetySettings",
                       "generationConfig", "cachedContent"})
PART_DATA = ("text", "inlineData", "fileData", "functionCall", "functionResponse", "executableCode",
             "codeExecutionResult")
FUNCTION_NAME = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_.:-]{0,63}$")
SDK_MODEL = {"contents": "Content", "systemInstruction": "Content", "tools": "Tool", "toolConfig": "ToolConfig",
             "safetySettings": "SafetySetting", "generationConfig": "GenerationConfig"}

ErrorFn = Callable[[int, str], web.Response]


@functools.cache
def sdk_model(name: str) -> Any:
    try:
        from google.genai import types
    except ImportError:  # pragma: no cover - the SDK is a dev dependency
        return None
    return getattr(types, name)


class Checker:
    def __init__(self, error: ErrorFn) -> None:
        self.error = error

    def bad(self, message: str) -> Exception:
        return abort(self.error(400, message))

    def request(self, body: Any) -> None:
        if not isinstance(body, dict):
            raise self.bad("Invalid JSON payload received. Expected an object.")
        for k in body:
            if k not in TOP_LEVEL:
                raise self.bad(f'Invalid JSON payload received. Unknown name "{k}": Cannot find field.')
        self.contents(body.get("contents"))
        for field, model in SDK_MODEL.items():
            if field in body:
                items = body[field] if field in ("contents", "tools", "safetySettings") else [body[field]]
                if not isinstance(items, list):
                    raise self.bad(f"Invalid value at '{field}': expected a list")
                for i, item in enumerate(items):
                    self.sdk(item, model, f"{field}[{i}]" if field in ("contents", "tools") else field)
        if "systemInstruction" in body:
            system = body["systemInstruction"]
            self.parts(system.get("parts") if isinstance(system, dict) else None, "system_instruction")
        for i, tool in enumerate(body.get("tools") or ()):
            for j, fn in enumerate(tool.get("functionDeclarations") or ()):
                self.function(fn, f"tools[{i}].function_declarations[{j}]")
        config = body.get("generationConfig") or {}
        if "responseSchema" in config:
            self.schema(config["responseSchema"], "generation_config.response_schema")
            if config.get("responseMimeType") not in ("application/json", "text/x.enum"):
                raise self.bad("* GenerateContentRequest.generation_config.response_mime_type: must be "
                               "application/json when response_schema is set")
        if not 1 <= int(config.get("candidateCount") or 1) <= 8:
            raise self.bad("* GenerateContentRequest.generation_config.candidate_count: must be in [1, 8]")

    def sdk(self, value: Any, model: str, path: str) -> None:
        cls = sdk_model(model)
        if cls is None:
            return
        try:
            cls.model_validate(value)
        except ValidationError as err:
            e = err.errors()[0]
            loc = ".".join(str(x) for x in e["loc"])
            if e["type"] == "extra_forbidden":
                raise self.bad(f'Invalid JSON payload received. Unknown name "{e["loc"][-1]}" at '
                               f"'{path}': Cannot find field.") from None
            raise self.bad(f"Invalid value at '{path}.{loc}': {e['msg']}") from None

    def contents(self, contents: Any) -> None:
        if not isinstance(contents, list) or not contents:
            raise self.bad("* GenerateContentRequest.contents: contents is not specified")
        calls = 0  # function calls of the previous model turn, to be answered one for one
        for i, c in enumerate(contents):
            if not isinstance(c, dict) or c.get("role") not in ("user", "model"):
                raise self.bad("Please use a valid role: user, model.")
            parts = c.get("parts")
            self.parts(parts, f"contents[{i}]")
            responses = sum(1 for p in parts if "functionResponse" in p)
            if calls and responses != calls:
                raise self.bad("Please ensure that the number of function response parts is equal to the number "
                               "of function call parts of the function call turn.")
            if responses and not calls:
                raise self.bad("Please ensure that function response turn comes immediately after a function "
                               "call turn.")
            calls = sum(1 for p in parts if "functionCall" in p) if c["role"] == "model" else 0

    def parts(self, parts: Any, path: str) -> None:
        if not isinstance(parts, list) or not parts:
            raise self.bad(f"* GenerateContentRequest.{path}.parts: contents.parts must not be empty.")
        for j, p in enumerate(parts):
            data = [k for k in PART_DATA if isinstance(p, dict) and k in p]
            if len(data) != 1:
                raise self.bad(f"* GenerateContentRequest.{path}.parts[{j}].data: required oneof field 'data' "
                               "must have one initialized field")
            value = p[data[0]]
            if data[0] != "text" and not isinstance(value, dict):
                raise self.bad(f"Invalid value at '{path}.parts[{j}].{data[0]}': expected an object")
            if data[0] == "inlineData":
                try:
                    base64.b64decode(value.get("data") or "", validate=True)
                except (binascii.Error, ValueError, TypeError):
                    raise self.bad(f"Invalid value at '{path}.parts[{j}].inline_data.data' (TYPE_BYTES), "
                                   "Base64 decoding failed") from None
                if not value.get("mimeType"):
                    raise self.bad(f"* GenerateContentRequest.{path}.parts[{j}].inline_data.mime_type: "
                                   "required field is not set")
            elif data[0] == "fileData" and not (value.get("fileUri") and value.get("mimeType")):
                raise self.bad(f"* GenerateContentRequest.{path}.parts[{j}].file_data: file_uri and mime_type "
                               "are required")
            elif data[0] in ("functionCall", "functionResponse"):
                if not isinstance(value.get("name"), str) or not value["name"]:
                    raise self.bad(f"* GenerateContentRequest.{path}.parts[{j}]: name is not specified")
                key = "args" if data[0] == "functionCall" else "response"
                if key in value and not isinstance(value[key], dict):
                    raise self.bad(f"Invalid value at '{path}.parts[{j}].{key}' (type.googleapis.com/"
                                   "google.protobuf.Struct), expected an object")

    def function(self, fn: Any, path: str) -> None:
        if not FUNCTION_NAME.match(str(fn.get("name") or "")):
            raise self.bad(f"* GenerateContentRequest.{path}.name: Invalid function name. Must start with a "
                           "letter or an underscore. Must be alphameric (a-z, A-Z, 0-9), underscores (_), dots "
                           "(.), colons (:), or dashes (-), with a maximum length of 64.")
        if "parameters" in fn:
            self.schema(fn["parameters"], f"{path}.parameters")

    def schema(self, s: Any, path: str) -> None:
        if not isinstance(s, dict):
            raise self.bad(f"Invalid value at '{path}': expected an object")
        if "additionalProperties" in s or "$ref" in s or "$schema" in s:
            name = next(k for k in ("additionalProperties", "$ref", "$schema") if k in s)
            raise self.bad(f'Invalid JSON payload received. Unknown name "{name}" at \'{path}\': '
                           "Cannot find field.")
        if str(s.get("type", "")).upper() == "OBJECT" and not s.get("properties"):
            raise self.bad(f"* GenerateContentRequest.{path}.properties: should be non-empty for OBJECT type")
        for k, v in (s.get("properties") or {}).items():
            self.schema(v, f"{path}.properties[{k}].value")
        if "items" in s:
            self.schema(s["items"], f"{path}.items")
        for i, v in enumerate(s.get("anyOf") or ()):
            self.schema(v, f"{path}.any_of[{i}]")
