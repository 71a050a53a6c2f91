"""Mistral (La Plateforme): OpenAI-compatible, but strict about fields and always streams usage.

Mistral answers 422 to any field it does not know, so the body is rewritten: OpenAI-only fields are
dropped, `seed` -> `random_seed`, `max_completion_tokens` -> `max_tokens`, `tool_choice: required`
-> `any`, `developer` messages -> `system`, unknown message keys removed, and tool-call ids (which
Mistral requires to be 9 alphanumerics) rewritten when a conversation came from another provider.
`stream_options` is never sent: Mistral puts the usage on its last content chunk anyway, and the
stream translator removes it there when the client did not ask for usage.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from typing import Any

from proxy.core.errors import UpstreamError
from proxy.providers.base import JSON, StreamTranslator
from proxy.providers.mistral.config import MistralConfig
from proxy.providers.mistral.errors import mistral_error
from proxy.providers.mistral.stream import MistralStream
from proxy.providers.openai.translator import OpenAITranslator

DROPPED = ("stream_options", "user", "logprobs", "top_logprobs", "logit_bias", "service_tier", "store",
           "metadata", "parallel_tool_calls", "modalities", "audio", "reasoning_effort", "web_search_options",
           "prompt_cache_key", "safety_identifier", "verbosity")
MESSAGE_KEYS = {
    "system": ("role", "content"),
    "user": ("role", "content"),
    "assistant": ("role", "content", "tool_calls", "prefix"),
    "tool": ("role", "content", "tool_call_id", "name"),
}
_MISTRAL_ID = re.compile(r"[A-Za-z0-9]{9}")


def mistral_tool_id(tool_call_id: Any) -> Any:
    """Mistral rejects ids that are not exactly 9 alphanumerics; map others to a stable such id."""
    if not isinstance(tool_call_id, str) or _MISTRAL_ID.fullmatch(tool_call_id):
        return tool_call_id
    return hashlib.blake2b(tool_call_id.encode(), digest_size=8).hexdigest()[:9]


def convert_message(m: Any) -> Any:
    if not isinstance(m, dict):
        return m
    role = "system" if m.get("role") == "developer" else m.get("role")
    keys = MESSAGE_KEYS.get(role)  # type: ignore[arg-type]
    if keys is None:
        return m  # unknown role: let Mistral say what is wrong with it
    out = {k: m[k] for k in keys if k in m}
    out["role"] = role
    if role == "tool":
        out["tool_call_id"] = mistral_tool_id(out.get("tool_call_id"))
    elif role == "assistant" and isinstance(out.get("tool_calls"), list):
        out["tool_calls"] = [{**tc, "id": mistral_tool_id(tc.get("id"))} if isinstance(tc, dict) else tc
                             for tc in out["tool_calls"]]
    return out


class MistralTranslator(OpenAITranslator):
    cfg: MistralConfig  # type: ignore[assignment]

    default_base_url = "https://api.mistral.ai/v1"

    def prepare_body(self, body: JSON, model: str, stream: bool) -> JSON:
        out = {k: v for k, v in body.items() if k not in DROPPED}
        out["model"] = model
        if "seed" in out:
            seed = out.pop("seed")
            out.setdefault("random_seed", seed)
        if "max_completion_tokens" in out:
            mct = out.pop("max_completion_tokens")
            if out.get("max_tokens") is None:
                out["max_tokens"] = mct
        if out.get("tool_choice") == "required":
            out["tool_choice"] = "any"
        if isinstance(out.get("messages"), list):
            out["messages"] = [convert_message(m) for m in out["messages"]]
        return out

    def stream_translator(self, body: JSON, model: str) -> StreamTranslator:
        return MistralStream(body, model)

    def error(self, status: int, headers: Mapping[str, str], data: bytes) -> UpstreamError:
        return mistral_error(status, headers, data)
