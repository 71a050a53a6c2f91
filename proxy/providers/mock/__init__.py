"""`type: mock`: in-process deterministic replies and fault injection (replies.py is shared with the mock
upstream). Its models cost nothing unless `pricing:` names them (metering/pricing.py)."""

from proxy.providers.mock.config import MockConfig
from proxy.providers.registry import Registration

PROVIDER = Registration("mock", MockConfig, provider="proxy.providers.mock.provider:MockProvider")
