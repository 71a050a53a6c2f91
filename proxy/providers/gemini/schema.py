"""OpenAI's JSON Schema (tool parameters, response_format) -> Gemini's OpenAPI-subset `Schema`.

Gemini rejects unknown schema keys, `$ref`, and (on the Developer API) `additionalProperties`,
and spells types in upper case; `type: [x, "null"]` / `anyOf: [x, {type: null}]` become `nullable`.
"""

from __future__ import annotations

from typing import Any

from proxy.providers.base import JSON

# google.genai.types.Schema fields the Developer API accepts (wire names)
KEEP = frozenset({
    "type", "format", "title", "description", "nullable", "enum", "items", "properties", "required",
    "minItems", "maxItems", "minProperties", "maxProperties", "minLength", "maxLength", "pattern",
    "minimum", "maximum", "example", "default", "anyOf", "propertyOrdering",
})
_MAX_DEPTH = 32  # recursive $refs are cut off here instead of looping


def to_gemini_schema(schema: Any) -> JSON:
    if not isinstance(schema, dict):
        return {"type": "OBJECT", "properties": {}}
    defs = {**(schema.get("definitions") or {}), **(schema.get("$defs") or {})}
    return _convert(schema, defs, 0)


def _convert(s: JSON, defs: JSON, depth: int) -> JSON:
    if depth > _MAX_DEPTH:
        return {"type": "OBJECT"}
    ref = s.get("$ref")
    if isinstance(ref, str) and ref.rsplit("/", 1)[-1] in defs:
        s = {**defs[ref.rsplit("/", 1)[-1]], **{k: v for k, v in s.items() if k != "$ref"}}
    out: JSON = {}
    nullable = False
    t = s.get("type")
    if isinstance(t, list):
        kinds = [k for k in t if k != "null"]
        nullable = len(kinds) < len(t)
        if len(kinds) == 1:
            t = kinds[0]
        else:
            out["anyOf"] = [{"type": k.upper()} for k in kinds]
            t = None
    if isinstance(t, str) and t != "null":
        out["type"] = t.upper()
    elif t == "null":
        nullable = True
    any_of = s.get("anyOf") or s.get("oneOf")
    if isinstance(any_of, list):
        branches = [b for b in any_of if not (isinstance(b, dict) and b.get("type") == "null")]
        nullable = nullable or len(branches) < len(any_of)
        if len(branches) == 1 and isinstance(branches[0], dict):
            out.update(_convert(branches[0], defs, depth + 1))
        elif branches:
            out["anyOf"] = [_convert(b, defs, depth + 1) for b in branches if isinstance(b, dict)]
    for key, value in s.items():
        if key not in KEEP or key in ("type", "anyOf", "enum"):
            continue
        if key == "properties" and isinstance(value, dict):
            out[key] = {k: _convert(v, defs, depth + 1) for k, v in value.items() if isinstance(v, dict)}
        elif key == "items" and isinstance(value, dict):
            out[key] = _convert(value, defs, depth + 1)
        else:
            out[key] = value
    enum = s["enum"] if isinstance(s.get("enum"), list) else [s["const"]] if "const" in s else None
    if enum is not None and out.get("type", "STRING") == "STRING":  # Gemini only has string enums
        out["type"], out["enum"] = "STRING", [str(v) for v in enum if v is not None]
    if nullable:
        out["nullable"] = True
    return out
