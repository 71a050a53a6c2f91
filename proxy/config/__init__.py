"""Pydantic models of gateway.yaml, and loading (with env interpolation, envvars.py) with clear errors.

Everything here is parsed once at startup; the request path only reads the resulting objects.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    AliasChoices,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_core import core_schema

from proxy.config.access import AdminConfig, ConsoleConfig, KeyConfig, TeamConfig, UserConfig
from proxy.config.agents import NAME as AGENT_NAME
from proxy.config.agents import AgentFields, ChainsConfig, OptimizePolicy
from proxy.config.base import CachePolicy, Strict
from proxy.config.envvars import interpolate
from proxy.config.listen import IpLimits, Listen
from proxy.config.webhooks import WebhooksConfig
from proxy.core.units import ByteSize, Duration
from proxy.providers.registry import settings_models
from proxy.providers.settings import BreakerConfig, Price, ProviderConfig, Timeouts


# ---------------------------------------------------------------- providers
class ProviderTypes:
    """`providers.<name>`: its `type:` checked against the registry's types (the error names `type` and lists
    them), then the rest validated by that type's settings model (errors name the field, as `providers.x.f`).

    The settings models come from the provider registry (proxy/providers/registry.py): the config layer sits
    above the providers in the import layers, so a new provider type needs no edit here."""

    def __get_pydantic_core_schema__(self, source: Any, handler: Any) -> core_schema.CoreSchema:
        models = settings_models()
        known_type = core_schema.typed_dict_schema(
            {"type": core_schema.typed_dict_field(core_schema.literal_schema(list(models)))}, extra_behavior="allow")
        return core_schema.chain_schema([
            known_type, core_schema.no_info_plain_validator_function(lambda v: models[v["type"]].model_validate(v))])


# ---------------------------------------------------------------- models (aliases)
class Deployment(Strict):
    provider: str
    model: str
    weight: float = Field(1.0, gt=0)
    rpm: int | None = Field(None, ge=1)
    tpm: int | None = Field(None, ge=1)


class RetryConfig(Strict):
    attempts: int = Field(2, ge=1, le=20)
    backoff: Duration = 0.2
    backoff_max: Duration = 5.0
    retry_after_max: Duration = 30.0


class ModelAlias(Strict):
    route: list[Deployment] = Field(min_length=1)
    strategy: Literal["priority", "weighted", "least-busy", "latency"] = "priority"
    retry: RetryConfig = Field(default_factory=RetryConfig)
    # `timeout:` is accepted too, the provider-level spelling
    timeouts: Timeouts | None = Field(None, validation_alias=AliasChoices("timeouts", "timeout"))
    fallbacks: list[str] = Field(default_factory=list)
    context_window_fallbacks: list[str] = Field(default_factory=list)
    content_policy_fallbacks: list[str] = Field(default_factory=list)
    cache: CachePolicy | None = None
    description: str | None = None
    optimize: OptimizePolicy | None = None  # prompt optimisation for calls to this alias

    @model_validator(mode="before")
    @classmethod
    def _one_timeout_key(cls, v: Any) -> Any:
        if isinstance(v, dict) and "timeout" in v and "timeouts" in v:
            raise ValueError("give one of `timeout` or `timeouts` (two spellings of the same setting)")
        return v


class RuleWhen(Strict):
    prompt_tokens_gt: int | None = Field(None, ge=0)
    key: str | None = None
    team: str | None = None
    alias: str | None = None
    header: dict[str, str] | None = None
    metadata: dict[str, Any] | None = None
    p95_latency_ms_gt: dict[str, Any] | None = None  # {alias: NAME, value: MS}

    @field_validator("p95_latency_ms_gt")
    @classmethod
    def _p95(cls, v: dict[str, Any] | None) -> dict[str, Any] | None:
        if v is not None and (not isinstance(v.get("alias"), str) or not isinstance(v.get("value"), int | float)):
            raise ValueError("p95_latency_ms_gt needs {alias: NAME, value: MILLISECONDS}")
        return v


class RoutingRule(Strict):
    when: RuleWhen
    use: str


class RedisConfig(Strict):
    url: str
    failure_mode: Literal["fail_open", "fail_closed"] = "fail_open"


class DatabaseConfig(Strict):
    url: str = "sqlite:///gateway.db"
    batch_size: int = Field(200, ge=1, le=100_000)
    flush_interval: Duration = 1.0
    queue_max: int = Field(100_000, ge=1)


class CacheConfig(Strict):
    # opt-in: without a `cache:` section the gateway default is off (GatewayConfig.cache); a section
    # turns it on unless it says `enabled: false`
    enabled: bool = True
    backend: Literal["memory", "redis"] = "memory"
    ttl: Duration = 7 * 86400
    max_bytes: ByteSize = 256 * 1024 * 1024


class BatchConfig(Strict):
    max_items: int = Field(100, ge=1, le=10_000)
    max_concurrency: int = Field(16, ge=1, le=1024)


class ResponsesConfig(Strict):
    """The Responses API (`/v1/responses`): how long a stored response (`store: true`) stays readable."""

    store_ttl: Duration = 30 * 86400


class MetricsConfig(Strict):
    enabled: bool = True
    key_label: bool = True  # drop the `key` label for cardinality


class LoggingConfig(Strict):
    level: Literal["debug", "info", "warning", "error"] = "info"
    format: Literal["auto", "json", "console"] = "auto"
    requests: bool = True


class BudgetSettings(Strict):
    timezone: str = "UTC"


class GatewayConfig(Strict):
    model_config = ConfigDict(extra="forbid", defer_build=True)  # ProviderTypes reads the provider registry

    listen: Listen = Field(default_factory=Listen)
    providers: dict[str, Annotated[ProviderConfig, ProviderTypes()]] = Field(default_factory=dict)
    models: dict[str, ModelAlias] = Field(default_factory=dict)
    keys: list[KeyConfig] = Field(default_factory=list)
    teams: dict[str, TeamConfig] = Field(default_factory=dict)
    admin: AdminConfig = Field(default_factory=AdminConfig)
    redis: RedisConfig | None = None
    database: DatabaseConfig = Field(default_factory=DatabaseConfig)
    cache: CacheConfig = Field(default_factory=lambda: CacheConfig(enabled=False))
    breaker: BreakerConfig = Field(default_factory=BreakerConfig)
    batch: BatchConfig = Field(default_factory=BatchConfig)
    responses: ResponsesConfig = Field(default_factory=ResponsesConfig)
    routing_rules: list[RoutingRule] = Field(default_factory=list)
    metrics: MetricsConfig = Field(default_factory=MetricsConfig)
    logging: LoggingConfig = Field(default_factory=LoggingConfig)
    pricing: dict[str, Price] = Field(default_factory=dict)
    budgets: BudgetSettings = Field(default_factory=BudgetSettings)
    ip_limits: IpLimits = Field(default_factory=IpLimits)
    webhooks: WebhooksConfig = Field(default_factory=WebhooksConfig)
    users: list[UserConfig] = Field(default_factory=list)
    console: ConsoleConfig = Field(default_factory=ConsoleConfig)
    # agents: versioned virtual models (`model: agent/<name>`); these are read-only version 1 in the admin API.
    # `agents_file:` names a YAML file whose `agents:` are loaded too (this file's entries win)
    agents: dict[str, AgentFields] = Field(default_factory=dict)
    agents_file: str | None = None
    chains: ChainsConfig = Field(default_factory=ChainsConfig)

    @model_validator(mode="after")
    def _agents_and_chains(self) -> GatewayConfig:
        for name, a in self.agents.items():
            if not AGENT_NAME.match(name):
                raise ValueError(f"agents.{name}: names are lower-case letters, digits, '.', '_' and '-'")
            if a.model not in self.models:
                raise ValueError(f"agents.{name}.model: unknown alias {a.model!r}")
        policies = [(f"agents.{n}", a.optimize) for n, a in self.agents.items()]
        policies += [(f"models.{n}", m.optimize) for n, m in self.models.items()]
        policies += [(f"keys.{k.name}", k.optimize) for k in self.keys]
        for where, p in policies:
            if p is not None and p.via is not None and p.via not in self.models:
                raise ValueError(f"{where}.optimize.via: unknown alias {p.via!r}")
        for name, chain in self.chains.named.items():
            if len(chain.steps) > self.chains.max_steps:
                raise ValueError(f"chains.named.{name}.steps: {len(chain.steps)} steps, chains.max_steps is "
                                 f"{self.chains.max_steps}")
        return self

    @model_validator(mode="after")
    def _references(self) -> GatewayConfig:
        for alias, m in self.models.items():
            for i, d in enumerate(m.route):
                if d.provider not in self.providers:
                    raise ValueError(f"models.{alias}.route.{i}.provider: unknown provider {d.provider!r}")
            for field in ("fallbacks", "context_window_fallbacks", "content_policy_fallbacks"):
                for target in getattr(m, field):
                    if target not in self.models:
                        raise ValueError(f"models.{alias}.{field}: unknown alias {target!r}")
        for i, rule in enumerate(self.routing_rules):
            if rule.use not in self.models:
                raise ValueError(f"routing_rules.{i}.use: unknown alias {rule.use!r}")
        names = [k.name for k in self.keys]
        if len(names) != len(set(names)):
            raise ValueError("keys: names must be unique")
        emails = [u.email for u in self.users]
        if len(emails) != len(set(emails)) or len({u.id for u in self.users}) != len(self.users):
            raise ValueError("users: emails and ids must be unique")
        by_ref = {u.id: u for u in self.users} | {u.email: u for u in self.users}
        for k in self.keys:
            if k.user_id is not None:
                user = by_ref.get(k.user_id.strip().lower()) or by_ref.get(k.user_id)
                if user is None:
                    raise ValueError(f"keys.{k.name}.user_id: no user {k.user_id!r} in `users:`")
                k.user_id = user.id
        return self

    def user(self, user_id: str | None) -> UserConfig | None:
        """The `users:` entry with this id (config keys name theirs by id after validation)."""
        return next((u for u in self.users if u.id == user_id), None) if user_id else None

    @model_validator(mode="after")
    def _cache_backend(self) -> GatewayConfig:
        if self.cache.backend == "redis" and self.redis is None and self.cache_configured():
            raise ValueError("cache.backend: redis needs a top-level `redis: {url: redis://...}`")
        return self

    def cache_configured(self) -> bool:
        """Whether this file turns the response cache on anywhere (globally, for an alias or a key)."""
        policies = [m.cache for m in self.models.values()] + [k.cache for k in self.keys]
        return self.cache.enabled or any(p is not None and p.enabled for p in policies)

    def live_aliases(self) -> list[str]:
        return [a for a, m in self.models.items() if any(self.providers[d.provider].enabled for d in m.route)]


class ConfigError(Exception):
    """A gateway.yaml problem, with a message that names the bad field."""


# ---------------------------------------------------------------- loading


def _format_validation_error(err: ValidationError) -> str:
    lines = []
    for e in err.errors():
        where = ".".join(str(p) for p in e["loc"]) or "(top level)"
        lines.append(f"  {where}: {e['msg']}")
    return "invalid gateway config:\n" + "\n".join(lines)


def _with_agents_file(raw: dict[str, Any], base: Path | None) -> dict[str, Any]:
    """`agents_file: path` (relative to the config file's folder): its `agents:` mapping, under the inline ones."""
    name = raw.get("agents_file")
    if not name or not isinstance(name, str):
        return raw
    path = Path(name)
    if not path.is_absolute() and base is not None and not path.exists():
        path = base / path
    try:
        loaded = yaml.safe_load(path.read_text()) or {}
    except OSError as err:
        raise ConfigError(f"agents_file: cannot read {path}: {err.strerror}") from None
    except yaml.YAMLError as err:
        raise ConfigError(f"agents_file: {path} is not valid YAML: {err}") from None
    agents = loaded.get("agents") if isinstance(loaded, dict) else None
    if not isinstance(agents, dict):
        raise ConfigError(f"agents_file: {path} needs a top-level `agents:` mapping")
    return {**raw, "agents": {**agents, **(raw.get("agents") or {})}}


def parse_config(raw: dict[str, Any] | None, env: dict[str, str] | None = None,
                 base: Path | None = None) -> GatewayConfig:
    """Validate a config mapping; providers whose env vars are unset are disabled with a reason."""
    env = dict(os.environ) if env is None else env
    raw = raw or {}
    if not isinstance(raw, dict):
        raise ConfigError("invalid gateway config: the top level must be a mapping")
    raw = _with_agents_file(raw, base)
    provider_missing: dict[str, set[str]] = {}
    providers = raw.get("providers") or {}
    if isinstance(providers, dict):
        new_providers = {}
        for name, p in providers.items():
            missing: set[str] = set()
            new_providers[name] = interpolate(p, env, missing)
            provider_missing[name] = missing
        raw = {**raw, "providers": new_providers}
    top_missing: set[str] = set()
    raw = interpolate(raw, env, top_missing)
    try:
        cfg = GatewayConfig.model_validate(raw)
    except ValidationError as err:
        raise ConfigError(_format_validation_error(err)) from None
    except ValueError as err:  # pragma: no cover - pydantic wraps these
        raise ConfigError(f"invalid gateway config: {err}") from None
    for name, p in cfg.providers.items():
        if not p.enabled:
            p.disabled_reason = "enabled: false"
        elif provider_missing.get(name):
            p.enabled = False
            p.disabled_reason = "env var not set: " + ", ".join(sorted(provider_missing[name]))
    return cfg


def load_config(path: str | Path, env: dict[str, str] | None = None) -> GatewayConfig:
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as err:
        raise ConfigError(f"cannot read config {path}: {err.strerror}") from None
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise ConfigError(f"{path} is not valid YAML: {err}") from None
    return parse_config(raw, env, path.parent)
