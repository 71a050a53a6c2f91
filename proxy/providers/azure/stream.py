"""Azure's stream: OpenAI's, but its first chunk (only `prompt_filter_results`, no choices) is dropped."""

from __future__ import annotations

import orjson

from proxy.providers.openai.stream import OpenAIStream


class AzureStream(OpenAIStream):
    look_for = (*OpenAIStream.look_for, b'"prompt_filter_results"')

    def feed(self, event: str | None, data: bytes) -> list[bytes]:
        if b'"prompt_filter_results"' in data and b'"prompt_tokens"' not in data:
            chunk = orjson.loads(data)
            if not chunk.get("choices"):
                return []  # annotation-only chunk (its `model` is also ""), see the module docstring
        return super().feed(event, data)
