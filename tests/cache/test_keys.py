"""Key normalisation and per-request cache-control parsing (pure functions)."""

from __future__ import annotations

import orjson
import pytest

from proxy.cache import controls
from proxy.cache.keys import cache_key, is_key, route_fingerprint
from proxy.config import parse_config

BODY = {"model": "up", "messages": [{"role": "user", "content": "hi", "name": "a"}], "temperature": 0.2}


def key(body: dict, kind: str = "chat", alias: str = "up", fp: str = "fp") -> str | None:  # type: ignore[type-arg]
    return cache_key(kind, alias, alias, fp, body)


def test_key_is_stable_and_short() -> None:
    k = key(BODY)
    assert k is not None and is_key(k) and k == key(dict(BODY))


def test_key_order_and_whitespace_do_not_matter() -> None:
    reordered = orjson.loads(b'{ "temperature" : 0.2 ,"messages":[{"name":"a","content":"hi","role":"user"}],'
                             b'\n "model": "up"}')
    assert key(reordered) == key(BODY)


@pytest.mark.parametrize("field,value", [
    ("user", "someone"), ("stream", True), ("stream_options", {"include_usage": True}),
    ("metadata", {"trace": "x"}), ("store", True), ("seed", None), ("top_p", None),
])
def test_fields_that_do_not_change_the_answer_are_left_out(field: str, value: object) -> None:
    assert key({**BODY, field: value}) == key(BODY)


@pytest.mark.parametrize("field,value", [
    ("temperature", 0.3), ("top_p", 0.5), ("max_tokens", 5), ("max_completion_tokens", 5), ("seed", 1),
    ("stop", ["x"]), ("n", 2), ("response_format", {"type": "json_object"}),
    ("tools", [{"type": "function", "function": {"name": "f"}}]), ("tool_choice", "required"),
    ("logprobs", True), ("frequency_penalty", 0.5), ("some_future_field", 1),
])
def test_fields_that_change_the_answer_change_the_key(field: str, value: object) -> None:
    assert key({**BODY, field: value}) != key(BODY)


def test_messages_kind_alias_and_route_are_in_the_key() -> None:
    other_msg = {**BODY, "messages": [{"role": "user", "content": "hi!", "name": "a"}]}
    assert len({key(BODY), key(other_msg), key(BODY, kind="embeddings"), key(BODY, alias="demo"),
                key(BODY, fp="other")}) == 5
    # a routing rule that serves the request from another alias gives another entry
    assert cache_key("chat", "up", "up", "fp", BODY) != cache_key("chat", "up", "demo", "fp", BODY)


def test_integral_floats_normalised() -> None:
    assert key({**BODY, "temperature": 1}) == key({**BODY, "temperature": 1.0})


def test_unhashable_body_has_no_key() -> None:
    assert key({**BODY, "seed": 2**70}) is None


def test_route_fingerprint_follows_providers_and_models() -> None:
    def cfg(model: str, base: str = "http://a/v1") -> object:
        return parse_config({"providers": {"p": {"type": "openai", "base_url": base, "api_key": "k"}},
                             "models": {"x": {"route": [{"provider": "p", "model": model}],
                                              "description": "anything"}}}, env={})

    assert route_fingerprint(cfg("m1"), "x") == route_fingerprint(cfg("m1"), "x")  # type: ignore[arg-type]
    assert route_fingerprint(cfg("m1"), "x") != route_fingerprint(cfg("m2"), "x")  # type: ignore[arg-type]
    assert route_fingerprint(cfg("m1"), "x") != route_fingerprint(cfg("m1", "http://b/v1"), "x")  # type: ignore[arg-type]


def test_is_key() -> None:
    assert is_key("0" * 32) and not is_key("0" * 31) and not is_key("g" * 32)


# ---------------------------------------------------------------- controls
def test_no_headers_share_one_object() -> None:
    assert controls.parse(None) is controls.NONE
    assert controls.parse({"Accept": "x"}) is controls.NONE


@pytest.mark.parametrize("cc,no_cache,no_store,max_age", [
    ("no-cache", True, False, None),
    ("no-store", False, True, None),
    ("No-Cache, NO-STORE", True, True, None),
    ("max-age=60", False, False, 60.0),
    ('max-age="5", private', False, False, 5.0),
    ("public, must-revalidate", False, False, None),
])
def test_cache_control(cc: str, no_cache: bool, no_store: bool, max_age: float | None) -> None:
    c = controls.parse({"Cache-Control": cc})
    assert (c.no_cache, c.no_store, c.max_age, c.warnings) == (no_cache, no_store, max_age, [])


@pytest.mark.parametrize("cc", ["bogus", "max-age=abc", "no-cache=yes", "max-age=-1", "max-age"])
def test_malformed_cache_control_warns(cc: str) -> None:
    c = controls.parse({"Cache-Control": cc})
    assert not c.no_cache and c.max_age is None
    assert c.warnings and "ignored Cache-Control" in c.warnings[0]


@pytest.mark.parametrize("value,ttl", [("60", 60.0), ("1.5", 1.5), ("1h", 3600.0), (" 0 ", 0.0)])
def test_ttl_header(value: str, ttl: float) -> None:
    assert controls.parse({"x-gateway-cache-ttl": value}).ttl == ttl


@pytest.mark.parametrize("value", ["soon", "-5", "", "1e9x"])
def test_bad_ttl_header_warns(value: str) -> None:
    c = controls.parse({"x-gateway-cache-ttl": value})
    assert c.ttl is None and "x-gateway-cache-ttl" in c.warnings[0]


def test_warning_is_printable_and_short() -> None:
    c = controls.parse({"Cache-Control": "x\x01" + "y" * 200})
    assert all(32 <= ord(ch) < 127 for ch in c.warnings[0]) and len(c.warnings[0]) < 120
