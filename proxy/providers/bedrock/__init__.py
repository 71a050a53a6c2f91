"""`type: bedrock`: AWS Bedrock Converse (chat, tools, images) and Titan embeddings. translator.py (signed
requests), convert.py (request mapping), response.py, stream.py, eventstream.py (AWS event-stream framing),
errors.py, auth.py (SigV4 with botocore: the optional extra, imported only when a bedrock provider is built)."""

from proxy.providers.bedrock.config import BedrockConfig
from proxy.providers.bedrock.prices import PRICES
from proxy.providers.registry import Registration

PROVIDER = Registration("bedrock", BedrockConfig, provider="proxy.providers.bedrock.provider:BedrockProvider",
                        prices=PRICES)
