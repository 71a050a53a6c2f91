"""`type: cli` settings: the argv to run (required) and how many processes may run at once."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from proxy.providers.settings import ProviderConfig


class CLIConfig(ProviderConfig):
    type: Literal["cli"] = "cli"
    command: list[str] | None = None
    max_concurrency: int = Field(4, ge=1, le=1024)

    @model_validator(mode="after")
    def _needs_command(self) -> CLIConfig:
        if not self.command:
            raise ValueError("type cli needs `command: [argv...]`")
        return self
