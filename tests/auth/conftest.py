"""Auth tests reuse the quota suite's fixtures (a Redis database per test)."""

from tests.admission.conftest import redis_url  # noqa: F401  (fixture, registered by import)
