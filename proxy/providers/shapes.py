"""OpenAI response shapes built from scratch, for translators whose upstream speaks something else.

Pass-through translators forward upstream bytes; these helpers serve the ones that must produce
`chat.completion`, `chat.completion.chunk` and embeddings objects themselves (bedrock, cli).
"""

from __future__ import annotations

import base64
import struct
import time
import uuid
from typing import Any

from .base import JSON, Usage


def completion_id() -> str:
    return "chatcmpl-" + uuid.uuid4().hex[:24]


def chat_completion(cid: str, model: str, message: JSON, finish_reason: str | None, usage: Usage,
                    created: int | None = None) -> JSON:
    return {
        "id": cid,
        "object": "chat.completion",
        "created": int(time.time()) if created is None else created,
        "model": model,
        "choices": [{"index": 0, "message": message, "logprobs": None, "finish_reason": finish_reason}],
        "usage": usage.to_openai(),
    }


def assistant_message(text: str, tool_calls: list[JSON] | None = None) -> JSON:
    # OpenAI sends `content: null` when the turn is only tool calls
    msg: JSON = {"role": "assistant", "content": text if (text or not tool_calls) else None, "refusal": None}
    if tool_calls:
        msg["tool_calls"] = tool_calls
    return msg


def chunk(cid: str, created: int, model: str, delta: JSON, finish_reason: str | None = None) -> JSON:
    return {
        "id": cid, "object": "chat.completion.chunk", "created": created, "model": model,
        "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}],
    }


def usage_chunk(cid: str, created: int, model: str, usage: Usage) -> JSON:
    """The extra last chunk OpenAI sends with `stream_options.include_usage`: no choices, only usage."""
    return {"id": cid, "object": "chat.completion.chunk", "created": created, "model": model,
            "choices": [], "usage": usage.to_openai()}


def estimate_tokens(text: str) -> int:
    """Rough token count (~4 characters per token) for upstreams that report none."""
    return (len(text) + 3) // 4


def encode_embedding(vector: list[float], encoding_format: Any) -> list[float] | str:
    """`encoding_format: base64` is little-endian float32 bytes; the openai SDK asks for it by default."""
    if encoding_format == "base64":
        return base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode()
    return vector


def embeddings_list(model: str, vectors: list[list[float]], prompt_tokens: int, encoding_format: Any) -> JSON:
    return {
        "object": "list",
        "data": [{"object": "embedding", "index": i, "embedding": encode_embedding(v, encoding_format)}
                 for i, v in enumerate(vectors)],
        "model": model,
        "usage": {"prompt_tokens": prompt_tokens, "total_tokens": prompt_tokens},
    }
