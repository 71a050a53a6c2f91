"""The built-in `mock` provider: answers in-process, no network, no keys (demos and tests)."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator

import orjson

from proxy.core.errors import bad_request, upstream_error_from_status
from proxy.infra.sse import frame
from proxy.providers.base import JSON, CallOptions, ChunkStream, Completion, Provider, RecordedStream, Usage
from proxy.providers.mock import replies
from proxy.providers.mock.config import MockConfig
from proxy.providers.transport import stream_cut


class MockProvider(Provider):
    cfg: MockConfig

    def _maybe_fail(self) -> None:
        b = self.cfg.mock
        if b.error_status and (b.error_rate == 0 or random.random() < b.error_rate):
            raise upstream_error_from_status(b.error_status, f"mock upstream error {b.error_status}")
        if not b.error_status and b.error_rate and random.random() < b.error_rate:
            raise upstream_error_from_status(500, "mock upstream error 500")

    def _words(self, body: JSON) -> tuple[list[str], int]:
        messages = body.get("messages") or []
        max_tokens = body.get("max_completion_tokens") or body.get("max_tokens")
        b = self.cfg.mock
        return (replies.reply_words(messages, b.reply, b.reply_tokens, max_tokens),
                replies.prompt_tokens(messages))

    async def complete(self, body: JSON, model: str, opts: CallOptions) -> Completion:
        b = self.cfg.mock
        if b.latency or b.ttft:
            await asyncio.sleep(b.latency + b.ttft)
        self._maybe_fail()
        words, p_tokens = self._words(body)
        finish = "length" if body.get("max_tokens") is not None and len(words) >= body["max_tokens"] else "stop"
        data = replies.chat_completion(model, words, p_tokens, finish)
        return Completion(body=orjson.dumps(data), usage=Usage(p_tokens, len(words)), model=model,
                          finish_reason=finish, data=data)

    async def stream(self, body: JSON, model: str, opts: CallOptions) -> ChunkStream:
        b = self.cfg.mock
        if b.ttft:
            await asyncio.sleep(b.ttft)
        self._maybe_fail()
        words, p_tokens = self._words(body)
        translator = RecordedStream(body, model)
        chunks = replies.stream_chunks(model, words, p_tokens, translator.include_usage)
        gap = 1.0 / b.tokens_per_s if b.tokens_per_s else 0.0

        async def gen() -> AsyncIterator[bytes]:
            for i, c in enumerate(chunks):
                if b.cut_after is not None and i >= b.cut_after:
                    raise stream_cut("mock stream cut")
                if gap and 0 < i <= len(words):
                    await asyncio.sleep(gap)
                yield frame(orjson.dumps(c))
            translator.usage = Usage(p_tokens, len(words))
            translator.finish_reason = "stop"

        return ChunkStream(gen(), translator)

    async def embed(self, body: JSON, model: str, opts: CallOptions) -> Completion:
        self._maybe_fail()
        dims = body.get("dimensions") or 8
        if type(dims) is not int or not 1 <= dims <= 4096:
            raise bad_request("Invalid 'dimensions': expected an integer from 1 to 4096.", param="dimensions")
        data = replies.embeddings(model, body.get("input", ""), dims)
        tokens = data["usage"]["prompt_tokens"]
        return Completion(body=orjson.dumps(data), usage=Usage(tokens, 0), model=model, data=data)
