"""AWS Bedrock: the Converse API (chat, tools, images) and Titan text embeddings, SigV4-signed.

Config: `region`, `access_key_id`, `secret_access_key`, `session_token` (all falling back to the
standard AWS env vars), optional `base_url` (default `https://bedrock-runtime.{region}.amazonaws.com`).
In a route the `model` is the Bedrock model id or inference-profile id/ARN.

Embeddings: Titan's `invoke` embeds one text per call, so `BedrockProvider.embed` sends one signed
call per input (up to MAX_EMBED_INPUTS, EMBED_CONCURRENCY at a time) and merges the answers.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Mapping
from urllib.parse import quote

import orjson
from yarl import URL

from proxy.config import ProviderConfig
from proxy.core.errors import UpstreamError
from proxy.providers.base import JSON, CallOptions, Completion, StreamTranslator, Translator, UpstreamRequest, Usage
from proxy.providers.bedrock.auth import Signer
from proxy.providers.bedrock.convert import bad_request, to_converse
from proxy.providers.bedrock.errors import http_error
from proxy.providers.bedrock.response import ConverseStream, from_converse, from_titan
from proxy.providers.shapes import embeddings_list
from proxy.providers.transport import HttpProvider

MAX_EMBED_INPUTS = 128
EMBED_CONCURRENCY = 8


class BedrockTranslator(Translator):
    stream_framing = "eventstream"

    def __init__(self, name: str, cfg: ProviderConfig, env: Mapping[str, str] | None = None) -> None:
        super().__init__(name, cfg)
        self.signer = Signer(cfg, os.environ if env is None else env)

    def base_url(self) -> str:
        return self.cfg.base_url or f"https://bedrock-runtime.{self.signer.region}.amazonaws.com"

    def _post(self, model: str, op: str, body: JSON, accept: str = "application/json") -> UpstreamRequest:
        self.signer.check()
        # Sign exactly the URL aiohttp will send: yarl re-normalises percent-escapes (`%3A` -> `:`)
        # and a signature over a different path than the wire one fails with InvalidSignature.
        url = str(URL(f"{self.base_url()}/model/{quote(model, safe='')}/{op}"))
        data = orjson.dumps(body)
        headers = {"Content-Type": "application/json", "Accept": accept, **self.cfg.headers}
        return UpstreamRequest("POST", url, self.signer.sign("POST", url, headers, data), data)

    def chat_request(self, body: JSON, model: str, stream: bool) -> UpstreamRequest:
        converse = to_converse(body)
        if stream:
            return self._post(model, "converse-stream", converse, "application/vnd.amazon.eventstream")
        return self._post(model, "converse", converse)

    def chat_response(self, data: bytes, model: str) -> Completion:
        return from_converse(orjson.loads(data), model)

    def stream_translator(self, body: JSON, model: str) -> StreamTranslator:
        return ConverseStream(body, model)

    def embeddings_request(self, body: JSON, model: str) -> UpstreamRequest:
        texts = embedding_inputs(body)
        if len(texts) != 1:
            raise bad_request("one input per Titan call", param="input")
        titan: JSON = {"inputText": texts[0]}
        if body.get("dimensions") is not None:
            titan["dimensions"] = body["dimensions"]
        return self._post(model, "invoke", titan)

    def embeddings_response(self, data: bytes, model: str) -> Completion:
        vector, tokens = from_titan(orjson.loads(data))
        out = embeddings_list(model, [vector], tokens, "float")
        return Completion(body=orjson.dumps(out), usage=Usage(tokens, 0), model=model, data=out)

    def probe_request(self) -> UpstreamRequest | None:
        # bedrock-runtime has no cheap read-only call; at least report missing botocore/credentials/region
        self.signer.check()
        return None

    def error(self, status: int, headers: Mapping[str, str], data: bytes) -> UpstreamError:
        return http_error(status, headers, data)


def embedding_inputs(body: JSON) -> list[str]:
    inp = body.get("input")
    if isinstance(inp, str):
        inp = [inp]
    if not isinstance(inp, list) or not inp or not all(isinstance(t, str) and t for t in inp):
        raise bad_request("Bedrock Titan embeds text: 'input' must be a non-empty string or a list of them "
                          "(token arrays are not supported)", param="input")
    if len(inp) > MAX_EMBED_INPUTS:
        raise bad_request(f"at most {MAX_EMBED_INPUTS} inputs per request for Bedrock embeddings",
                          param="input")
    return inp


class BedrockProvider(HttpProvider):
    """HttpProvider plus multi-input embeddings (one Titan call per input)."""

    def __init__(self, name: str, cfg: ProviderConfig) -> None:
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


__all__ = ["BedrockProvider", "BedrockTranslator"]
