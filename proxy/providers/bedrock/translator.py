"""The Bedrock translator: Converse / ConverseStream and Titan `invoke` requests, SigV4-signed (auth.py).

In a route the `model` is the Bedrock model id or inference-profile id/ARN. Streams are AWS event streams
(eventstream.py), not SSE.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Mapping
from urllib.parse import quote

import orjson
from yarl import URL

from proxy.core.errors import UpstreamError
from proxy.providers.base import JSON, Completion, StreamTranslator, Translator, UpstreamRequest, Usage
from proxy.providers.bedrock.auth import Signer
from proxy.providers.bedrock.config import BedrockConfig
from proxy.providers.bedrock.convert import bad_request, to_converse
from proxy.providers.bedrock.errors import http_error
from proxy.providers.bedrock.eventstream import iter_eventstream
from proxy.providers.bedrock.response import from_converse, from_titan
from proxy.providers.bedrock.stream import ConverseStream
from proxy.providers.shapes import embeddings_list

MAX_EMBED_INPUTS = 128


class BedrockTranslator(Translator):
    cfg: BedrockConfig

    def __init__(self, name: str, cfg: BedrockConfig, env: Mapping[str, str] | None = None) -> None:
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

    def stream_events(self, reads: AsyncIterator[bytes]) -> AsyncIterator[tuple[str | None, bytes]]:
        return iter_eventstream(reads)

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
