"""The Bedrock runtime: the shared HttpProvider, plus embeddings of several inputs.

Titan's `invoke` embeds one text per call, so `BedrockProvider.embed` sends one signed call per input
(up to MAX_EMBED_INPUTS, EMBED_CONCURRENCY at a time) and merges the answers.
"""

from __future__ import annotations

import asyncio

import orjson

from proxy.providers.base import JSON, CallOptions, Completion, Usage
from proxy.providers.bedrock.config import BedrockConfig
from proxy.providers.bedrock.translator import BedrockTranslator, embedding_inputs
from proxy.providers.shapes import embeddings_list
from proxy.providers.transport import HttpProvider

EMBED_CONCURRENCY = 8


class BedrockProvider(HttpProvider):
    """HttpProvider plus multi-input embeddings (one Titan call per input)."""

    def __init__(self, name: str, cfg: BedrockConfig) -> None:
        super().__init__(name, cfg, BedrockTranslator(name, cfg))

    async def embed(self, body: JSON, model: str, opts: CallOptions) -> Completion:
        texts = embedding_inputs(body)
        gate = asyncio.Semaphore(EMBED_CONCURRENCY)
        tr = self.translator

        async def one(text: str) -> Completion:
            async with gate:
                req = tr.embeddings_request({**body, "input": text}, model)
                return await self._complete(req, opts, lambda data: tr.embeddings_response(data, model))

        try:
            async with asyncio.TaskGroup() as tg:  # the first failure cancels the other calls
                tasks = [tg.create_task(one(t)) for t in texts]
        except ExceptionGroup as group:
            raise group.exceptions[0] from None
        parts = [t.result() for t in tasks]
        vectors = [p.data["data"][0]["embedding"] for p in parts if p.data]
        tokens = sum(p.usage.prompt_tokens for p in parts)
        out = embeddings_list(model, vectors, tokens, body.get("encoding_format"))
        return Completion(body=orjson.dumps(out), usage=Usage(tokens, 0), model=model, data=out)

