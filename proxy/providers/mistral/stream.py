"""Mistral's stream: OpenAI's, with the usage it always puts on its last chunk removed when not asked for."""

from __future__ import annotations

import orjson

from proxy.providers.openai.stream import OpenAIStream


class MistralStream(OpenAIStream):
    def feed(self, event: str | None, data: bytes) -> list[bytes]:
        out = super().feed(event, data)
        if out and not self.include_usage and b'"prompt_tokens"' in data:
            chunk = orjson.loads(data)  # only the last chunk carries usage: re-serialise just that one
            if chunk.pop("usage", None) is not None:
                return [orjson.dumps(chunk)]
        return out
