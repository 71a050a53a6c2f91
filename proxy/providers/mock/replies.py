"""Deterministic replies shared by the in-process `mock` provider and the standalone mock upstream.

A reply is a list of tokens (words): `echo` repeats the last user message, `lorem` produces
`reply_tokens` words of lorem ipsum. Token counts are words, so tests can predict usage exactly.
"""

from __future__ import annotations

import hashlib
import time
from typing import Any

from proxy.providers.shapes import embeddings_list

LOREM = (
    "lorem ipsum dolor sit amet consectetur adipiscing elit sed do eiusmod tempor incididunt ut labore "
    "et dolore magna aliqua ut enim ad minim veniam quis nostrud exercitation ullamco laboris nisi ut "
    "aliquip ex ea commodo consequat"
).split()


def content_text(content: Any) -> str:
    """Text of an OpenAI message `content` (string or list of parts)."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(p.get("text", "") for p in content if isinstance(p, dict) and p.get("type") == "text")
    return ""


def count_tokens(text: str) -> int:
    return len(text.split())


def prompt_tokens(messages: list[Any]) -> int:
    return sum(count_tokens(content_text(m.get("content"))) for m in messages if isinstance(m, dict))


def reply_words(messages: list[Any], mode: str, n_tokens: int, max_tokens: int | None) -> list[str]:
    if mode == "echo":
        last = next((m for m in reversed(messages) if isinstance(m, dict) and m.get("role") == "user"), None)
        words = content_text(last.get("content")).split() if last else []
        words = words or ["ok"]
    else:
        words = [LOREM[i % len(LOREM)] for i in range(n_tokens)]
    if max_tokens is not None and max_tokens >= 0:
        words = words[:max_tokens]
    return words


def completion_id(seed: str) -> str:
    return "chatcmpl-mock" + hashlib.blake2b(seed.encode(), digest_size=8).hexdigest()


def chat_completion(model: str, words: list[str], p_tokens: int, finish_reason: str = "stop") -> dict[str, Any]:
    text = " ".join(words)
    return {
        "id": completion_id(text + model),
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [{
            "index": 0,
            "message": {"role": "assistant", "content": text, "refusal": None},
            "logprobs": None,
            "finish_reason": finish_reason,
        }],
        "usage": {"prompt_tokens": p_tokens, "completion_tokens": len(words),
                  "total_tokens": p_tokens + len(words)},
        "system_fingerprint": "fp_mock",
    }


def chunk(cid: str, created: int, model: str, delta: dict[str, Any], finish_reason: str | None,
          usage_null: bool) -> dict[str, Any]:
    c: dict[str, Any] = {
        "id": cid, "object": "chat.completion.chunk", "created": created, "model": model,
        "system_fingerprint": "fp_mock",
        "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}],
    }
    if usage_null:
        c["usage"] = None
    return c


def stream_chunks(model: str, words: list[str], p_tokens: int, include_usage: bool,
                  finish_reason: str = "stop") -> list[dict[str, Any]]:
    """The chunk sequence OpenAI sends: role chunk, one chunk per token, finish chunk, usage chunk."""
    cid, created = completion_id(" ".join(words) + model), int(time.time())
    out = [chunk(cid, created, model, {"role": "assistant", "content": ""}, None, include_usage)]
    for i, w in enumerate(words):
        out.append(chunk(cid, created, model, {"content": w if i == 0 else " " + w}, None, include_usage))
    out.append(chunk(cid, created, model, {}, finish_reason, include_usage))
    if include_usage:
        out.append({
            "id": cid, "object": "chat.completion.chunk", "created": created, "model": model,
            "system_fingerprint": "fp_mock", "choices": [],
            "usage": {"prompt_tokens": p_tokens, "completion_tokens": len(words),
                      "total_tokens": p_tokens + len(words)},
        })
    return out


def embedding_vector(text: str, dims: int = 8) -> list[float]:
    digest = hashlib.sha256(text.encode()).digest()
    return [round((digest[i % len(digest)] - 128) / 128, 6) for i in range(dims)]


def embeddings(model: str, inputs: Any, dims: int = 8) -> dict[str, Any]:
    # one input: a string or an array of token ids; several: an array of either
    items = [inputs] if isinstance(inputs, str) or (inputs and isinstance(inputs[0], int)) else list(inputs)
    texts = [i if isinstance(i, str) else " ".join(map(str, i)) for i in items]
    tokens = sum(count_tokens(t) for t in texts)
    return embeddings_list(model, [embedding_vector(t, dims) for t in texts], tokens, "float")
