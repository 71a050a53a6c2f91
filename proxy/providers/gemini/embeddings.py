"""OpenAI embeddings <-> Gemini `embedContent` (one input) / `batchEmbedContents` (a list)."""

from __future__ import annotations

from typing import Any

import orjson

from proxy.core.tokens import text_tokens
from proxy.providers.base import JSON, Completion, Usage
from proxy.providers.inputs import unsupported
from proxy.providers.shapes import encode_embedding


def model_name(model: str) -> str:
    return model if model.startswith(("models/", "tunedModels/")) else f"models/{model}"


def build_request(body: JSON, model: str) -> tuple[str, JSON]:
    """-> (method, payload): a string is one `embedContent`, a list of strings one batch."""
    inp = body.get("input")
    dims = body.get("dimensions")
    if dims is not None and (type(dims) is not int or dims < 1):
        raise unsupported("`dimensions` must be a positive integer", "dimensions")

    def one(text: str) -> JSON:
        req: JSON = {"model": model_name(model), "content": {"parts": [{"text": text}]}}
        if dims:
            req["outputDimensionality"] = dims
        return req

    if isinstance(inp, str):
        return "embedContent", one(inp)
    if isinstance(inp, list) and inp and all(isinstance(x, str) for x in inp):
        return "batchEmbedContents", {"requests": [one(x) for x in inp]}
    raise unsupported("Gemini embeddings take `input` as a string or a list of strings (not token ids)", "input")


def estimate_tokens(inp: Any) -> int:
    """Gemini's embedding answers carry no usage: about 4 characters a token, as Google documents."""
    texts = [inp] if isinstance(inp, str) else [x for x in inp or () if isinstance(x, str)]
    return sum(max(1, text_tokens(t)) for t in texts)


def convert_response(d: Any, body: JSON, model: str) -> Completion:
    if not isinstance(d, dict):
        raise ValueError("the Gemini embeddings response is not an object")
    if isinstance(d.get("embedding"), dict):
        vectors = [d["embedding"].get("values") or []]
    elif isinstance(d.get("embeddings"), list):
        vectors = [e.get("values") or [] for e in d["embeddings"]]
    else:
        raise ValueError("no `embedding(s)` in the Gemini response")
    reported = (d.get("usageMetadata") or {}).get("promptTokenCount")
    tokens = int(reported) if reported is not None else estimate_tokens(body.get("input"))
    fmt = body.get("encoding_format")
    data = [{"object": "embedding", "index": i, "embedding": encode_embedding(v, fmt)} for i, v in enumerate(vectors)]
    out = {"object": "list", "model": model, "data": data,
           "usage": {"prompt_tokens": tokens, "total_tokens": tokens}}
    return Completion(body=orjson.dumps(out), usage=Usage(prompt_tokens=tokens), model=model, data=out)
