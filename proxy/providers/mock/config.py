"""`type: mock` settings: `mock:` (MockBehaviour, in proxy.config: the mock upstream reads it too)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from proxy.providers.settings import MockBehaviour, ProviderConfig


class MockConfig(ProviderConfig):
    type: Literal["mock"] = "mock"
    mock: MockBehaviour = Field(default_factory=MockBehaviour)
