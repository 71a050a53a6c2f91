"""Table definitions (SQLAlchemy core). The migrations in `migrations/versions` must create exactly
these; a test compares them with Alembic's autogenerate so the two cannot drift apart."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql


class UTCDateTime(sa.types.TypeDecorator[datetime]):
    """Timezone-aware UTC in and out on both dialects.

    PostgreSQL stores timestamptz. SQLite has no timezone support, so values are stored as naive UTC
    text in one fixed format (which also keeps string comparison in range filters correct).
    """

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: sa.Dialect) -> datetime | None:
        if value is None:
            return None
        value = value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: Any, dialect: sa.Dialect) -> datetime | None:
        if value is None:
            return None
        if isinstance(value, str):  # raw text from SQLite when the column is read through an expression
            value = datetime.fromisoformat(value)
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


# none_as_null: a Python None becomes SQL NULL rather than the JSON literal 'null'
JSON = sa.JSON(none_as_null=True).with_variant(postgresql.JSONB(none_as_null=True), "postgresql")
# SQLite only auto-increments an INTEGER PRIMARY KEY (a rowid alias), not BIGINT
BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")

metadata = sa.MetaData()

def _not_null(column: str) -> dict[str, Any]:
    """A partial index's condition, for both dialects."""
    where = sa.text(f'"{column}" IS NOT NULL')
    return {"sqlite_where": where, "postgresql_where": where}


usage = sa.Table(
    "usage",
    metadata,
    sa.Column("id", BigId, primary_key=True, autoincrement=True),
    sa.Column("request_id", sa.Text, nullable=False),
    sa.Column("key_id", sa.Text),
    sa.Column("key_name", sa.Text),
    sa.Column("user", sa.Text),
    sa.Column("team", sa.Text),
    sa.Column("alias", sa.Text, nullable=False),
    sa.Column("provider", sa.Text, nullable=False),
    sa.Column("upstream_model", sa.Text, nullable=False),
    sa.Column("prompt_tokens", sa.Integer, nullable=False),
    sa.Column("completion_tokens", sa.Integer, nullable=False),
    sa.Column("cached_tokens", sa.Integer, nullable=False),
    sa.Column("cost_usd", sa.Double, nullable=False),
    sa.Column("saved_usd", sa.Double, nullable=False),
    sa.Column("latency_ms", sa.Double, nullable=False),
    sa.Column("ttft_ms", sa.Double),
    sa.Column("status", sa.Integer, nullable=False),
    sa.Column("error_type", sa.Text),
    sa.Column("cache_hit", sa.Boolean, nullable=False),
    sa.Column("stream", sa.Boolean, nullable=False),
    sa.Column("fallback", sa.Text),
    sa.Column("attempts", sa.Integer, nullable=False),
    sa.Column("client_ip", sa.Text),  # as resolved behind trusted proxies (0002)
    sa.Column("created_at", UTCDateTime, nullable=False),
    # (0006) the agent (and version) a call went through, the chain it was a step of, and prompt
    # optimisation: the prompt's estimated tokens before and after, and what that saved
    sa.Column("agent", sa.Text),
    sa.Column("agent_version", sa.Integer),
    sa.Column("chain_id", sa.Text),
    sa.Column("prompt_tokens_original", sa.Integer),
    sa.Column("prompt_tokens_sent", sa.Integer),
    sa.Column("prompt_saved_usd", sa.Double),
    sa.Index("ix_usage_created_at", "created_at"),
    # (x, created_at) serves both "all rows of x" and the budget query "spend of x since t"
    sa.Index("ix_usage_key_id_created_at", "key_id", "created_at"),
    sa.Index("ix_usage_key_name_created_at", "key_name", "created_at"),  # filters accept a key's name too
    # columns most rows leave NULL get partial indexes (0009): a row writes no entry in them, and a query on
    # `x = value` (which implies x IS NOT NULL) still uses them
    sa.Index("ix_usage_team_created_at", "team", "created_at", **_not_null("team")),
    # a user's spend (budgets) and usage across their keys: `user` holds the user id for their keys (0003)
    sa.Index("ix_usage_user_created_at", "user", "created_at", **_not_null("user")),
    sa.Index("ix_usage_agent_created_at", "agent", "created_at", **_not_null("agent")),
    sa.Index("ix_usage_chain_id", "chain_id", **_not_null("chain_id")),
)

virtual_keys = sa.Table(
    "virtual_keys",
    metadata,
    sa.Column("id", sa.Text, primary_key=True),
    sa.Column("name", sa.Text, nullable=False),
    sa.Column("key_sha256", sa.Text, nullable=False),
    sa.Column("previous_sha256", sa.Text),
    sa.Column("previous_expires_at", UTCDateTime),
    sa.Column("models", JSON, nullable=False),
    sa.Column("limits", JSON),
    sa.Column("budget", JSON),
    sa.Column("user", sa.Text),
    sa.Column("team", sa.Text),
    sa.Column("metadata", JSON, nullable=False),
    sa.Column("cache", JSON),
    sa.Column("expires_at", UTCDateTime),
    sa.Column("disabled", sa.Boolean, nullable=False),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("updated_at", UTCDateTime, nullable=False),
    # soft delete, so replicas polling updated_at also learn about deletions
    sa.Column("deleted_at", UTCDateTime),
    sa.Column("user_id", sa.Text),  # the console user owning the key (0004); no FK: config users too
    # `signing: required` keys (0005): HMAC verification needs the secret itself, so it is stored as is (a
    # second factor beside the bearer key, which is only stored hashed); never returned after creation
    sa.Column("signing_secret", sa.Text),
    sa.Column("optimize", JSON),  # the key's prompt optimisation policy (0008); NULL: none
    sa.UniqueConstraint("key_sha256", name="uq_virtual_keys_key_sha256"),
    sa.Index("ix_virtual_keys_previous_sha256", "previous_sha256"),
    sa.Index("ix_virtual_keys_updated_at", "updated_at"),
    sa.Index("ix_virtual_keys_user_id", "user_id"),
)

users = sa.Table(
    "users",
    metadata,
    sa.Column("id", sa.Text, primary_key=True),
    sa.Column("email", sa.Text, nullable=False),  # lower case; rewritten on delete so it can be reused
    sa.Column("name", sa.Text, nullable=False),
    sa.Column("team", sa.Text),
    sa.Column("role", sa.Text, nullable=False),
    sa.Column("password_hash", sa.Text),  # Argon2id; NULL: cannot sign in with a password
    sa.Column("limits", JSON),
    sa.Column("budget", JSON),
    sa.Column("disabled", sa.Boolean, nullable=False),
    sa.Column("source", sa.Text, nullable=False),  # db | config (gateway.yaml `users:`, read-only)
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("updated_at", UTCDateTime, nullable=False),
    sa.Column("deleted_at", UTCDateTime),
    sa.UniqueConstraint("email", name="uq_users_email"),
    sa.Index("ix_users_updated_at", "updated_at"),
)

console_sessions = sa.Table(
    "console_sessions",
    metadata,
    sa.Column("id", sa.Text, primary_key=True),  # SHA-256 of the cookie's token: the token is never stored
    sa.Column("kind", sa.Text, nullable=False),  # password | api_key | admin_key
    sa.Column("user_id", sa.Text),
    sa.Column("subject", JSON, nullable=False),  # {id, email, name, team, role} as signed in
    sa.Column("key_sha256", sa.Text),  # the key an api_key session acts with (digest, as virtual_keys has it)
    sa.Column("ip", sa.Text),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("expires_at", UTCDateTime, nullable=False),
    sa.Column("revoked_at", UTCDateTime),
    sa.Index("ix_console_sessions_user_id", "user_id"),
    sa.Index("ix_console_sessions_expires_at", "expires_at"),
)

audit_log = sa.Table(
    "audit_log",
    metadata,
    sa.Column("id", BigId, primary_key=True, autoincrement=True),
    sa.Column("at", UTCDateTime, nullable=False),
    sa.Column("actor", sa.Text, nullable=False),
    sa.Column("action", sa.Text, nullable=False),
    sa.Column("target", sa.Text),
    sa.Column("before", JSON),
    sa.Column("after", JSON),
    sa.Column("ip", sa.Text),  # the caller's client IP (0002)
    sa.Index("ix_audit_log_at", "at"),
)

budget_alerts = sa.Table(
    "budget_alerts",
    metadata,
    sa.Column("id", BigId, primary_key=True, autoincrement=True),
    sa.Column("at", UTCDateTime, nullable=False),
    sa.Column("scope", sa.Text, nullable=False),
    sa.Column("name", sa.Text, nullable=False),
    sa.Column("period_start", UTCDateTime, nullable=False),
    sa.Column("threshold", sa.Double, nullable=False),
    sa.Column("spend_usd", sa.Double, nullable=False),
    sa.Column("limit_usd", sa.Double, nullable=False),
    # an alert fires once per (scope, name, period, threshold), even with many replicas racing
    sa.UniqueConstraint("scope", "name", "period_start", "threshold", name="uq_budget_alerts_once"),
    sa.Index("ix_budget_alerts_at", "at"),
)

# webhooks (0003): subscriptions, and one delivery per (event, subscription), written before any attempt
webhook_subscriptions = sa.Table(
    "webhook_subscriptions",
    metadata,
    sa.Column("id", sa.Text, primary_key=True),  # wh_<hex>, or cfg:<name> for gateway.yaml's
    sa.Column("source", sa.Text, nullable=False),  # api | config
    sa.Column("url", sa.Text, nullable=False),
    sa.Column("events", JSON, nullable=False),
    sa.Column("active", sa.Boolean, nullable=False),
    sa.Column("description", sa.Text),
    sa.Column("filter", JSON),
    # the signing secret (NULL for gateway.yaml's, which keep theirs in the config), and the previous one
    # for the rotation grace period
    sa.Column("secret", sa.Text),
    sa.Column("previous_secret", sa.Text),
    sa.Column("previous_expires_at", UTCDateTime),
    sa.Column("disabled_reason", sa.Text),
    sa.Column("failing_since", UTCDateTime),  # first failed attempt since the last success
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("updated_at", UTCDateTime, nullable=False),
)

webhook_deliveries = sa.Table(
    "webhook_deliveries",
    metadata,
    sa.Column("id", sa.Text, primary_key=True),  # whd_<hex>
    sa.Column("event_id", sa.Text, nullable=False),  # the webhook-id header: the same on every attempt
    sa.Column("subscription_id", sa.Text, nullable=False),
    sa.Column("event_type", sa.Text, nullable=False),
    sa.Column("body", sa.Text, nullable=False),  # the exact JSON sent, so every attempt signs the same bytes
    sa.Column("status", sa.Text, nullable=False),  # pending | delivered | failed
    sa.Column("attempts", sa.Integer, nullable=False),
    sa.Column("step", sa.Integer, nullable=False),  # position in the retry schedule (0 again after a retry)
    sa.Column("next_attempt_at", UTCDateTime),
    sa.Column("lease_until", UTCDateTime),  # a replica is attempting it (SQLite; PostgreSQL also locks rows)
    sa.Column("last_status", sa.Integer),
    sa.Column("last_error", sa.Text),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("updated_at", UTCDateTime, nullable=False),
    sa.Column("delivered_at", UTCDateTime),
    # one delivery per event and subscription, whichever replica produced it first
    sa.UniqueConstraint("event_id", "subscription_id", name="uq_webhook_deliveries_event"),
    sa.Index("ix_webhook_deliveries_due", "status", "next_attempt_at"),
    sa.Index("ix_webhook_deliveries_subscription", "subscription_id", "created_at"),
)

# when and from where each key (virtual_keys.id or cfg:<name>) was last used (0005); written at most once a
# minute per key per replica, off the request path (auth/lastused.py)
key_last_used = sa.Table(
    "key_last_used",
    metadata,
    sa.Column("key_id", sa.Text, primary_key=True),
    sa.Column("last_used_at", UTCDateTime, nullable=False),
    sa.Column("last_used_ip", sa.Text),
)

# agents (0006): `agents` points at each agent's live version; versions are immutable rows
agents = sa.Table(
    "agents",
    metadata,
    sa.Column("name", sa.Text, primary_key=True),
    sa.Column("version", sa.Integer, nullable=False),  # the one `agent/<name>` calls (rollback moves it)
    sa.Column("latest_version", sa.Integer, nullable=False),  # the next PATCH writes latest_version + 1
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("updated_at", UTCDateTime, nullable=False),
)

agent_versions = sa.Table(
    "agent_versions",
    metadata,
    sa.Column("name", sa.Text, primary_key=True),
    sa.Column("version", sa.Integer, primary_key=True),
    sa.Column("spec", JSON, nullable=False),  # description, model, system, params, tools, variables, optimize
    sa.Column("created_by", sa.Text),
    sa.Column("created_at", UTCDateTime, nullable=False),
)

# the Responses API's stored responses (0007): `store: true` keeps a Response for GET/DELETE
# /v1/responses/{id} and previous_response_id, readable only by the key that made it, until it expires
stored_responses = sa.Table(
    "stored_responses",
    metadata,
    sa.Column("id", sa.Text, primary_key=True),  # resp_<hex>
    sa.Column("key_id", sa.Text, nullable=False),
    sa.Column("input", JSON, nullable=False),  # the conversation's input items, earlier responses' included
    sa.Column("response", JSON, nullable=False),  # the Response object as the client got it
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("expires_at", UTCDateTime, nullable=False),
    sa.Index("ix_stored_responses_expires_at", "expires_at"),
)

ALL_TABLES = (
    usage, virtual_keys, users, console_sessions, audit_log, budget_alerts, webhook_subscriptions,
    webhook_deliveries, key_last_used, agents, agent_versions, stored_responses,
)
