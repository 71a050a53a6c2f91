"""gateway.yaml's `agents:` (and `agents_file:`), `chains:` and the `optimize:` policy, also the admin API's
input models for agents (the same validation either way: a bad template is an error naming the field)."""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator

from proxy.core.templates import TemplateError, compile_template
from proxy.core.units import Duration

NAME = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")
# the request fields an agent's `params` may set (sampling and output controls, never model or messages)
AGENT_PARAMS = frozenset({"temperature", "top_p", "max_tokens", "max_completion_tokens", "stop", "seed",
                          "presence_penalty", "frequency_penalty", "response_format", "tool_choice",
                          "parallel_tool_calls", "reasoning_effort", "logit_bias", "n"})
Scalar = str | int | float | bool | None


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class OptimizePolicy(_Strict):
    """`optimize:` on a key, an alias or an agent: `compact` (deterministic whitespace and duplicate-system
    compaction) or `rewrite` (a cheap alias shortens prompts above `min_tokens`; compaction first)."""

    mode: Literal["compact", "rewrite"]
    via: str | None = None  # rewrite: the alias that shortens the prompt
    min_tokens: int = Field(500, ge=1, le=10_000_000)  # rewrite: shorter prompts are only compacted

    @model_validator(mode="after")
    def _via(self) -> OptimizePolicy:
        if self.mode == "rewrite" and not self.via:
            raise ValueError("mode rewrite needs `via: <alias>` (the cheap model that shortens prompts)")
        return self


def check_template(source: str | None) -> str | None:
    if source is not None:
        try:
            compile_template(source)
        except TemplateError as err:
            raise ValueError(str(err)) from None
    return source


class AgentFields(_Strict):
    """What an agent version is: a template and settings over an alias."""

    description: str | None = Field(None, max_length=2000)
    model: str = Field(min_length=1, max_length=200)
    variables: dict[str, Scalar] = Field(default_factory=dict)  # name -> default; null: required
    system: str | None = Field(None, max_length=100_000)  # validated after `variables`: it may use only those
    params: dict[str, Any] = Field(default_factory=dict)
    tools: list[dict[str, Any]] = Field(default_factory=list, max_length=128)
    optimize: OptimizePolicy | None = None

    @field_validator("system")
    @classmethod
    def _template(cls, v: str | None, info: ValidationInfo) -> str | None:
        if v is None:
            return v
        try:
            used = compile_template(v).variables
        except TemplateError as err:
            raise ValueError(str(err)) from None
        undeclared = used - set(info.data.get("variables") or {})
        if undeclared:
            raise ValueError(f"the template uses undeclared variable(s) {', '.join(sorted(undeclared))}; declare "
                             "them in `variables` (null for required)")
        return v

    @field_validator("params")
    @classmethod
    def _params(cls, v: dict[str, Any]) -> dict[str, Any]:
        unknown = sorted(set(v) - AGENT_PARAMS)
        if unknown:
            raise ValueError(f"unknown parameter(s) {', '.join(unknown)}; allowed: {', '.join(sorted(AGENT_PARAMS))}")
        return v

    @field_validator("variables")
    @classmethod
    def _variable_names(cls, v: dict[str, Scalar]) -> dict[str, Scalar]:
        for name in v:
            if not re.fullmatch(r"[A-Za-z][A-Za-z0-9_]{0,63}", name):
                raise ValueError(f"variable name {name!r}: letters, digits and _, starting with a letter")
        return v


class ChainStep(_Strict):
    """One step: a model (alias or `agent/<name>[@v]`) and either `messages` (their string contents are
    templates) or a `prompt` template (one user message); `{{ input }}` and `{{ steps.<name>.output }}`."""

    name: str | None = Field(None, pattern=r"^[A-Za-z][A-Za-z0-9_]{0,63}$")
    model: str = Field(min_length=1, max_length=200)
    prompt: str | None = Field(None, max_length=100_000)
    messages: list[dict[str, Any]] | None = Field(None, min_length=1, max_length=256)
    params: dict[str, Any] = Field(default_factory=dict)
    on_error: str = "stop"  # stop | skip | fallback:<alias>

    @field_validator("prompt")
    @classmethod
    def _template(cls, v: str | None) -> str | None:
        return check_template(v)

    @field_validator("params")
    @classmethod
    def _params(cls, v: dict[str, Any]) -> dict[str, Any]:
        return AgentFields._params(v)

    @field_validator("on_error")
    @classmethod
    def _on_error(cls, v: str) -> str:
        if v in ("stop", "skip") or (v.startswith("fallback:") and len(v) > len("fallback:")):
            return v
        raise ValueError("one of stop, skip or fallback:<alias>")

    @model_validator(mode="after")
    def _one_input(self) -> ChainStep:
        if (self.prompt is None) == (self.messages is None):
            raise ValueError("give exactly one of `prompt` or `messages`")
        for i, msg in enumerate(self.messages or ()):
            if not isinstance(msg.get("role"), str) or not isinstance(msg.get("content"), str):
                raise ValueError(f"messages.{i}: needs a string `role` and a string `content` (a template)")
            try:
                check_template(msg["content"])
            except ValueError as err:
                raise ValueError(f"messages.{i}.content: {err}") from None
        return self


class ChainSpec(_Strict):
    steps: list[ChainStep] = Field(min_length=1)
    description: str | None = None


class ChainsConfig(_Strict):
    max_steps: int = Field(10, ge=1, le=100)
    deadline: Duration = 300.0  # the whole chain, every step included
    named: dict[str, ChainSpec] = Field(default_factory=dict)  # called as model "chain/<name>"

    @field_validator("named")
    @classmethod
    def _names(cls, v: dict[str, ChainSpec]) -> dict[str, ChainSpec]:
        for name in v:
            if not NAME.match(name):
                raise ValueError(f"chain name {name!r}: lower-case letters, digits, '.', '_' and '-'")
        return v
