"""OpenAI chat-completions <-> Gemini `generateContent`: request and (non-stream) response mapping.

Pure functions over JSON dicts. Wire names are the camelCase aliases of `google.genai.types`
(Content, Part, GenerationConfig, Tool, ToolConfig, GenerateContentResponse).
"""

from __future__ import annotations

import hashlib
import mimetypes
import time
from typing import Any

import orjson

from proxy.providers.base import JSON, Completion, Usage
from proxy.providers.gemini.errors import blocked_prompt
from proxy.providers.gemini.schema import to_gemini_schema
from proxy.providers.inputs import parse_data_url, tool_arguments, unsupported

FILTERED = frozenset({"SAFETY", "RECITATION", "BLOCKLIST", "PROHIBITED_CONTENT", "SPII", "IMAGE_SAFETY",
                      "IMAGE_PROHIBITED_CONTENT", "IMAGE_RECITATION", "MODEL_ARMOR"})
TOOL_CHOICE = {"auto": "AUTO", "none": "NONE", "required": "ANY"}
AUDIO_TYPES = {"wav": "audio/wav", "mp3": "audio/mp3"}
# A function call's thoughtSignature must come back with it (Gemini 3 rejects history without it);
# OpenAI clients only keep the tool call id, so the signature rides in the id after this separator.
THOUGHT_SEP = "__thought__"


# ---------------------------------------------------------------- request
def build_request(body: JSON, model: str) -> JSON:
    system, contents = convert_messages(body.get("messages") or [])
    out: JSON = {"contents": contents}
    if system:
        out["systemInstruction"] = {"parts": system}
    tools = body.get("tools")
    if tools:
        out["tools"] = [{"functionDeclarations": [function_declaration(t, i) for i, t in enumerate(tools)]}]
        if body.get("tool_choice") is not None:
            out["toolConfig"] = {"functionCallingConfig": function_calling_config(body["tool_choice"])}
    config = generation_config(body)
    if config:
        out["generationConfig"] = config
    return out


def generation_config(body: JSON) -> JSON:
    out: JSON = {}
    for src, dst in (("temperature", "temperature"), ("top_p", "topP"), ("seed", "seed"),
                     ("presence_penalty", "presencePenalty"), ("frequency_penalty", "frequencyPenalty")):
        if body.get(src) is not None:
            out[dst] = body[src]
    max_tokens = body.get("max_completion_tokens") or body.get("max_tokens")
    if max_tokens:
        out["maxOutputTokens"] = int(max_tokens)
    stop = body.get("stop")
    if stop:
        out["stopSequences"] = [stop] if isinstance(stop, str) else list(stop)
    if (body.get("n") or 1) != 1:
        out["candidateCount"] = int(body["n"])
    fmt = body.get("response_format") or {}
    if fmt.get("type") == "json_object":
        out["responseMimeType"] = "application/json"
    elif fmt.get("type") == "json_schema":
        out["responseMimeType"] = "application/json"
        schema = (fmt.get("json_schema") or {}).get("schema")
        if schema:
            out["responseSchema"] = to_gemini_schema(schema)
    return out


def function_declaration(tool: Any, i: int) -> JSON:
    fn = tool.get("function") if isinstance(tool, dict) and tool.get("type") == "function" else None
    if not isinstance(fn, dict) or not fn.get("name"):
        raise unsupported(f"tools[{i}]: only function tools with a name are supported", f"tools[{i}]")
    out: JSON = {"name": fn["name"]}
    if fn.get("description"):
        out["description"] = fn["description"]
    params = fn.get("parameters")
    if params and (params.get("properties") or params.get("type") not in (None, "object")):
        out["parameters"] = to_gemini_schema(params)  # Gemini rejects an OBJECT schema without properties
    return out


def function_calling_config(choice: Any) -> JSON:
    if isinstance(choice, str) and choice in TOOL_CHOICE:
        return {"mode": TOOL_CHOICE[choice]}
    if isinstance(choice, dict) and (choice.get("function") or {}).get("name"):
        return {"mode": "ANY", "allowedFunctionNames": [choice["function"]["name"]]}
    raise unsupported("tool_choice must be auto, none, required or {type: function, function: {name}}",
                  "tool_choice")


def convert_messages(messages: list[Any]) -> tuple[list[JSON], list[JSON]]:
    """OpenAI messages -> (systemInstruction parts, contents); same-role neighbours are merged."""
    system: list[JSON] = []
    contents: list[JSON] = []
    names: dict[str, str] = {}  # tool_call id -> function name: functionResponse needs the name
    for i, m in enumerate(messages):
        if not isinstance(m, dict):
            raise unsupported(f"messages[{i}] must be an object", f"messages[{i}]")
        role, where = m.get("role"), f"messages[{i}].content"
        if role in ("system", "developer"):
            system += [p for p in user_parts(m.get("content"), where) if "text" in p]
        elif role == "user":
            _append(contents, "user", user_parts(m.get("content"), where))
        elif role == "assistant":
            parts = [p for p in user_parts(m.get("content"), where) if "text" in p]
            for j, call in enumerate(m.get("tool_calls") or ()):
                fn = call.get("function") if isinstance(call, dict) else None
                if not isinstance(fn, dict) or not fn.get("name"):
                    raise unsupported(f"messages[{i}].tool_calls[{j}] needs function.name", f"messages[{i}]")
                call_id = str(call.get("id"))
                names[call_id] = fn["name"]
                part: JSON = {"functionCall": {"name": fn["name"], "args": parse_arguments(fn.get("arguments"), i, j)}}
                if THOUGHT_SEP in call_id:
                    part["thoughtSignature"] = call_id.split(THOUGHT_SEP, 1)[1]
                parts.append(part)
            _append(contents, "model", parts)
        elif role == "tool":
            name = names.get(str(m.get("tool_call_id")))
            if name is None:
                raise unsupported(f"messages[{i}].tool_call_id does not match a tool call of an earlier "
                              "assistant message", f"messages[{i}].tool_call_id")
            _append(contents, "user", [{"functionResponse": {"name": name,
                                                              "response": tool_response(m.get("content"))}}])
        else:
            raise unsupported(f"messages[{i}].role {role!r} is not supported by Gemini", f"messages[{i}].role")
    return system, contents


def _append(contents: list[JSON], role: str, parts: list[JSON]) -> None:
    if not parts:
        return
    if contents and contents[-1]["role"] == role:
        contents[-1]["parts"].extend(parts)
    else:
        contents.append({"role": role, "parts": list(parts)})


def user_parts(content: Any, where: str) -> list[JSON]:
    if content is None:
        return []
    if isinstance(content, str):
        return [{"text": content}] if content else []
    if not isinstance(content, list):
        raise unsupported(f"{where} must be a string or a list of parts", where)
    out = []
    for j, part in enumerate(content):
        kind = part.get("type") if isinstance(part, dict) else None
        if kind in ("text", "refusal"):
            if part.get(kind):
                out.append({"text": part[kind]})
        elif kind == "image_url":
            image = part.get("image_url")
            out.append(media_part(image.get("url") if isinstance(image, dict) else image, f"{where}[{j}]"))
        elif kind == "input_audio":
            audio = part.get("input_audio") or {}
            out.append({"inlineData": {"mimeType": AUDIO_TYPES.get(audio.get("format"), "audio/wav"),
                                       "data": audio.get("data") or ""}})
        elif kind == "file":
            out.append(media_part((part.get("file") or {}).get("file_data"), f"{where}[{j}]"))
        else:
            raise unsupported(f"{where}[{j}]: content part type {kind!r} is not supported by Gemini",
                          f"{where}[{j}].type")
    return out


def media_part(url: Any, where: str) -> JSON:
    """data: URL -> inlineData; http(s) URL -> fileData with a MIME type guessed from the path."""
    if isinstance(url, str) and url.startswith("data:"):
        mime, data = parse_data_url(url, where)
        return {"inlineData": {"mimeType": mime, "data": data}}
    if isinstance(url, str) and url.startswith(("https://", "http://")):
        mime = mimetypes.guess_type(url.split("?", 1)[0])[0] or "image/jpeg"
        return {"fileData": {"mimeType": mime, "fileUri": url}}
    raise unsupported(f"{where}: expected an http(s) or data URL", where)


def parse_arguments(args: Any, i: int, j: int) -> JSON:
    try:
        value = tool_arguments(args)
    except ValueError:
        value = None
    if not isinstance(value, dict):
        raise unsupported(f"messages[{i}].tool_calls[{j}].function.arguments must be a JSON object",
                      f"messages[{i}].tool_calls[{j}]")
    return value


def tool_response(content: Any) -> JSON:
    """A tool's output as the JSON object Gemini wants: objects as they are, anything else as `output`."""
    if isinstance(content, list):
        content = "".join(p.get("text") or "" for p in content if isinstance(p, dict))
    if isinstance(content, str):
        try:
            value = orjson.loads(content)
        except orjson.JSONDecodeError:
            value = content
    else:
        value = content
    return value if isinstance(value, dict) else {"output": value}


# ---------------------------------------------------------------- response
def usage_from(m: Any) -> Usage:
    """Gemini's promptTokenCount already includes cached tokens; thinking is billed as output."""
    m = m if isinstance(m, dict) else {}
    return Usage(
        prompt_tokens=int(m.get("promptTokenCount") or 0) + int(m.get("toolUsePromptTokenCount") or 0),
        completion_tokens=int(m.get("candidatesTokenCount") or 0) + int(m.get("thoughtsTokenCount") or 0),
        cached_tokens=int(m.get("cachedContentTokenCount") or 0),
    )


def usage_json(m: Any) -> JSON:
    out = usage_from(m).to_openai()
    thoughts = int((m or {}).get("thoughtsTokenCount") or 0)
    if thoughts:
        out["completion_tokens_details"] = {"reasoning_tokens": thoughts}
    return out


def check_blocked(d: JSON) -> None:
    feedback = d.get("promptFeedback") or {}
    if feedback.get("blockReason") and not d.get("candidates"):
        raise blocked_prompt(str(feedback["blockReason"]), feedback.get("blockReasonMessage"))


def finish_reason(reason: str | None, has_tools: bool) -> str | None:
    if reason is None:
        return None
    if reason in FILTERED:
        return "content_filter"
    if reason == "MAX_TOKENS":
        return "length"
    return "tool_calls" if has_tools else "stop"  # Gemini says STOP after a function call


def read_parts(candidate: JSON, first_call: int) -> tuple[str, list[JSON]]:
    """A candidate's visible text and its function calls as OpenAI tool_calls (ids `call_<n>`)."""
    texts, calls = [], []
    for part in (candidate.get("content") or {}).get("parts") or ():
        if "text" in part and not part.get("thought"):
            texts.append(part["text"])
        elif isinstance(part.get("functionCall"), dict):
            fc = part["functionCall"]
            call_id = fc.get("id") or f"call_{first_call + len(calls)}"
            if part.get("thoughtSignature"):
                call_id += THOUGHT_SEP + part["thoughtSignature"]
            calls.append({"id": call_id, "type": "function",
                          "function": {"name": fc.get("name") or "",
                                       "arguments": orjson.dumps(fc.get("args") or {}).decode()}})
    return "".join(texts), calls


def completion_id(d: JSON) -> str:
    rid = d.get("responseId")
    if rid:
        return f"chatcmpl-{rid}"
    return "chatcmpl-" + hashlib.blake2b(orjson.dumps(d), digest_size=12).hexdigest()


def convert_response(d: Any, model: str) -> Completion:
    if not isinstance(d, dict):
        raise ValueError("the Gemini response is not an object")
    check_blocked(d)
    candidates = d.get("candidates")
    if not isinstance(candidates, list) or not candidates:
        raise ValueError("no `candidates` in the Gemini response")
    choices, n_calls = [], 0
    for pos, cand in enumerate(candidates):
        text, calls = read_parts(cand, n_calls)
        n_calls += len(calls)
        message: JSON = {"role": "assistant", "content": text if text or not calls else None, "refusal": None}
        if calls:
            message["tool_calls"] = calls
        choices.append({"index": cand.get("index", pos), "message": message, "logprobs": None,
                        "finish_reason": finish_reason(cand.get("finishReason") or "STOP", bool(calls))})
    choices.sort(key=lambda c: c["index"])
    answered = d.get("modelVersion") or model
    out = {"id": completion_id(d), "object": "chat.completion", "created": int(time.time()),
           "model": answered, "choices": choices, "usage": usage_json(d.get("usageMetadata"))}
    return Completion(body=orjson.dumps(out), usage=usage_from(d.get("usageMetadata")), model=answered,
                      finish_reason=choices[0]["finish_reason"], data=out)
