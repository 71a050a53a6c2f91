"""Hypothesis strategies for the fuzz tests: arbitrary JSON, and chat / admin payloads that are mostly shaped
right with hostile values anywhere (wrong types, odd unicode, huge or negative numbers, deep nesting)."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

# a bounded budget (the whole fuzz suite runs in seconds, well under two minutes); no example database on
# disk; function-scoped fixtures (the servers) are shared by every example on purpose
FUZZ = settings(max_examples=150, deadline=None, database=None, print_blob=True,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])

scalars = (st.none() | st.booleans() | st.integers(min_value=-(2**63), max_value=2**64)
           | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=40))
json_values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=4)
                           | st.dictionaries(st.text(max_size=12), inner, max_size=4), max_leaves=12)


def maybe(strategy: st.SearchStrategy[Any], odds: int = 12) -> st.SearchStrategy[Any]:
    """Usually the well-typed value, one time in `odds` any JSON at all (so most bodies get past validation
    and reach the translators, while every field is sometimes hostile)."""
    return st.integers(1, odds).flatmap(lambda i: json_values if i == 1 else strategy)


roles = maybe(st.sampled_from(["system", "developer", "user", "assistant", "tool", "function"]))
parts = st.lists(maybe(st.fixed_dictionaries(
    {"type": maybe(st.sampled_from(["text", "image_url", "input_audio", "file"]))},
    optional={"text": maybe(st.text(max_size=50)),
              "image_url": maybe(st.fixed_dictionaries({"url": maybe(st.sampled_from(
                  ["https://example.invalid/a.png", "data:image/png;base64,iVBORw0KGgo=", "data:,x", "file:///etc/passwd",
                   "ftp://x", ""]))}))})), max_size=3)
tool_calls = st.lists(maybe(st.fixed_dictionaries(
    {"id": maybe(st.text(max_size=8)), "type": maybe(st.just("function")),
     "function": maybe(st.fixed_dictionaries({"name": maybe(st.text(max_size=10)),
                                              "arguments": maybe(st.text(max_size=30))}))})), max_size=2)
messages = st.lists(maybe(st.fixed_dictionaries(
    {"role": roles},
    optional={"content": maybe(st.one_of(st.text(max_size=60), parts, st.none())),
              "name": maybe(st.text(max_size=10)), "tool_calls": maybe(tool_calls),
              "tool_call_id": maybe(st.text(max_size=10))})), min_size=1, max_size=5)
tools = st.lists(maybe(st.fixed_dictionaries(
    {"type": maybe(st.just("function")),
     "function": maybe(st.fixed_dictionaries({"name": maybe(st.text(max_size=10)),
                                              "parameters": maybe(json_values)}))})), max_size=3)


def chat_bodies(aliases: list[str]) -> st.SearchStrategy[Any]:
    body = st.fixed_dictionaries(
        {"model": maybe(st.sampled_from([*aliases, "no-such-alias"])), "messages": maybe(messages)},
        optional={"stream": maybe(st.booleans()), "stream_options": maybe(st.fixed_dictionaries(
                      {"include_usage": maybe(st.booleans())})),
                  "n": maybe(st.integers(-5, 200)), "max_tokens": maybe(st.integers(-5, 10**12)),
                  "max_completion_tokens": maybe(st.integers(-5, 100)),
                  "temperature": maybe(st.floats(-10, 10, allow_nan=False)), "top_p": maybe(st.floats(0, 1)),
                  "stop": maybe(st.one_of(st.text(max_size=5), st.lists(st.text(max_size=5), max_size=5))),
                  "tools": maybe(tools), "tool_choice": maybe(st.sampled_from(["auto", "none", "required"])),
                  "response_format": maybe(st.fixed_dictionaries({"type": maybe(st.sampled_from(
                      ["text", "json_object", "json_schema"]))})),
                  "seed": maybe(st.integers()), "user": maybe(st.text(max_size=10)),
                  "metadata": json_values})
    return maybe(body, 20)  # now and then not even an object


limit_sets = st.fixed_dictionaries({}, optional={k: maybe(st.integers(-1, 10**12)) for k in ("rpm", "tpm", "rpd")})
key_fields = st.fixed_dictionaries({}, optional={
    "name": maybe(st.text(max_size=30)),
    "models": maybe(st.lists(st.text(max_size=10), max_size=3)),
    "limits": maybe(st.fixed_dictionaries({}, optional={
        "rpm": maybe(st.integers(-1, 10**12)), "per_provider": maybe(st.dictionaries(
            st.sampled_from(["mock", "nope"]), limit_sets, max_size=2)),
        "per_alias": maybe(st.dictionaries(st.sampled_from(["demo", "nope"]), limit_sets, max_size=2))})),
    "budget": maybe(st.fixed_dictionaries({"usd": maybe(st.floats(-1, 1e12, allow_nan=False))}, optional={
        "period": maybe(st.sampled_from(["daily", "weekly", "monthly", "hourly"])),
        "alert_thresholds": maybe(st.lists(st.floats(-1, 20, allow_nan=False), max_size=3))})),
    "user": maybe(st.text(max_size=20)), "team": maybe(st.text(max_size=20)), "metadata": maybe(json_values),
    "expires_at": maybe(st.sampled_from(["2099-01-01T00:00:00Z", "2000-01-01", "not a date", "2099-13-45", ""])),
    "cache": maybe(st.fixed_dictionaries({}, optional={"enabled": maybe(st.booleans()),
                                                       "ttl": maybe(st.sampled_from(["1h", "-1s", "x", 5]))})),
    "optimize": maybe(st.fixed_dictionaries({}, optional={
        "mode": maybe(st.sampled_from(["compact", "rewrite", "shrink"])), "via": maybe(st.sampled_from(["demo", "nope"])),
        "min_tokens": maybe(st.integers(-1, 10**8))})),
    "disabled": maybe(st.booleans()), "signing": maybe(st.sampled_from(["off", "required", "maybe"])),
})
query_values = st.one_of(st.text(max_size=20), st.sampled_from(["24h", "7d", "2025-01-01", "-1", "0", "99999999999",
                                                                "day", "key", "csv", "4xx", "abc"]))



def dumps(value: Any) -> bytes:
    """JSON for a request body; the standard library, as orjson refuses integers beyond 64 bits (clients don't)."""
    return json.dumps(value).encode()
