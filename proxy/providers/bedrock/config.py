"""`type: bedrock` settings: region and AWS credentials (each falling back to the standard AWS_* env vars).

`base_url` defaults to `https://bedrock-runtime.{region}.amazonaws.com`; an `api_key` (a Bedrock API key,
sent as a bearer token) replaces SigV4.
"""

from __future__ import annotations

from typing import Literal

from proxy.providers.settings import ProviderConfig


class BedrockConfig(ProviderConfig):
    type: Literal["bedrock"] = "bedrock"
    region: str | None = None
    access_key_id: str | None = None
    secret_access_key: str | None = None
    session_token: str | None = None
