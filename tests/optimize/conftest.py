"""Optimisation tests reuse the quota suite's fixtures (Redis database per test, PostgreSQL schema)."""

from tests.admission.conftest import pg_url, redis_url  # noqa: F401  (fixtures, registered by import)
