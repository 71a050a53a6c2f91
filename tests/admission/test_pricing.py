"""Cost math (every branch of proxy/pricing.py: `make test` gates it at 100%), Bedrock-native list prices,
cache writes at the cache-write price, and no silent $0: unpriced calls counted, logged once, listed by
`gateway check-config`."""

from __future__ import annotations

from pathlib import Path

import aiohttp
import pytest
from structlog.testing import capture_logs

from proxy.cli import main
from proxy.config import parse_config
from proxy.core.context import RequestContext
from proxy.metering.meter import Meter
from proxy.metering.pricing import DEFAULT_PRICES, FREE, PriceTable, bare_name, cost_of, unpriced_routes
from proxy.observability.metrics import Recorder
from proxy.providers.anthropic.chat import usage_from as anthropic_usage
from proxy.providers.base import Usage
from proxy.providers.bedrock.response import usage_from as bedrock_usage
from proxy.providers.settings import Price
from tests.admission.conftest import chat, metric_value, post_chat, quota_config
from tests.conftest import GatewayFactory, MockUpstream

M = 1_000_000


def test_cache_reads_and_writes_are_billed_at_their_own_prices() -> None:
    sonnet = DEFAULT_PRICES["claude-sonnet-4"]
    assert sonnet.cache_write == pytest.approx(1.25 * sonnet.input)
    assert sonnet.cached_input == pytest.approx(0.1 * sonnet.input)
    # Anthropic counts cache reads and writes apart from input_tokens; the translator folds them in
    usage = anthropic_usage({"input_tokens": 100, "cache_creation_input_tokens": 1000,
                             "cache_read_input_tokens": 2000, "output_tokens": 50})
    assert (usage.prompt_tokens, usage.cached_tokens, usage.cache_write_tokens) == (3100, 2000, 1000)
    expected = (100 * 3.0 + 2000 * 0.30 + 1000 * 3.75 + 50 * 15.0) / M
    assert PriceTable().cost("anthropic", "claude-sonnet-4-20250514", usage) == pytest.approx(expected)
    # the same call through Bedrock (cross-region profile, versioned id): the same list prices
    usage = bedrock_usage({"inputTokens": 100, "cacheWriteInputTokens": 1000, "cacheReadInputTokens": 2000,
                           "outputTokens": 50})
    assert PriceTable().cost("bedrock", "us.anthropic.claude-sonnet-4-20250514-v1:0", usage) == pytest.approx(
        expected)


def test_missing_cache_prices_fall_back_to_the_input_price() -> None:
    plain = Price(input=2.0, output=8.0)
    u = Usage(prompt_tokens=1000, completion_tokens=10, cached_tokens=300, cache_write_tokens=200)
    assert cost_of(plain, u) == pytest.approx((1000 * 2.0 + 10 * 8.0) / M)
    priced = Price(input=2.0, output=8.0, cached_input=0.5, cache_write=4.0)
    assert cost_of(priced, u) == pytest.approx((500 * 2.0 + 300 * 0.5 + 200 * 4.0 + 10 * 8.0) / M)
    # counts that exceed the prompt (a confused upstream) never bill more tokens than the prompt had
    odd = Usage(prompt_tokens=100, cached_tokens=80, cache_write_tokens=80)
    assert cost_of(priced, odd) == pytest.approx((80 * 0.5 + 20 * 4.0) / M)


@pytest.mark.parametrize(("model", "entry"), [
    ("anthropic.claude-3-5-sonnet-20241022-v2:0", "claude-3-5-sonnet"),
    ("eu.anthropic.claude-3-7-sonnet-20250219-v1:0", "claude-3-7-sonnet"),
    ("apac.anthropic.claude-3-haiku-20240307-v1:0", "claude-3-haiku"),
    ("anthropic.claude-opus-4-5-20251101-v1:0", "claude-opus-4-5"),
    ("anthropic.claude-opus-4-1-20250805-v1:0", "claude-opus-4"),
    ("anthropic.claude-v2:1", "claude-v2"),
    ("anthropic.claude-instant-v1", "claude-instant"),
    ("meta.llama3-8b-instruct-v1:0", "meta.llama3-8b-instruct"),
    ("meta.llama3-70b-instruct-v1:0", "meta.llama3-70b-instruct"),
    ("us.meta.llama3-1-70b-instruct-v1:0", "meta.llama3-1-70b-instruct"),
    ("us.meta.llama3-2-11b-instruct-v1:0", "meta.llama3-2-11b-instruct"),
    ("us.meta.llama3-3-70b-instruct-v1:0", "meta.llama3-3-70b-instruct"),
    ("us.meta.llama4-maverick-17b-instruct-v1:0", "meta.llama4-maverick-17b-instruct"),
    ("mistral.mistral-7b-instruct-v0:2", "mistral.mistral-7b-instruct"),
    ("mistral.mixtral-8x7b-instruct-v0:1", "mistral.mixtral-8x7b-instruct"),
    ("mistral.mistral-large-2402-v1:0", "mistral.mistral-large-2402"),
    ("mistral.mistral-large-2407-v1:0", "mistral.mistral-large-2407"),
    ("us.mistral.pixtral-large-2502-v1:0", "mistral.pixtral-large-2502"),
    ("amazon.titan-text-express-v1", "amazon.titan-text-express"),
    ("amazon.titan-text-premier-v1:0", "amazon.titan-text-premier"),
    ("amazon.titan-embed-text-v1", "amazon.titan-embed-text-v1"),
    ("amazon.titan-embed-text-v2:0", "amazon.titan-embed-text-v2"),
    ("amazon.nova-micro-v1:0", "amazon.nova-micro"),
    ("us.amazon.nova-lite-v1:0", "amazon.nova-lite"),
    ("us.amazon.nova-pro-v1:0", "amazon.nova-pro"),
    ("us.amazon.nova-premier-v1:0", "amazon.nova-premier"),
])
def test_bedrock_native_models_have_list_prices(model: str, entry: str) -> None:
    assert PriceTable().lookup("bedrock", model) is DEFAULT_PRICES[entry]


def test_bedrock_mistral_is_not_priced_as_mistrals_own_api() -> None:
    t = PriceTable()
    assert t.lookup("bedrock", "mistral.mistral-large-2402-v1:0").input == 4.0  # type: ignore[union-attr]
    assert t.lookup("mistral", "mistral-large-2402").input == 2.0  # type: ignore[union-attr]
    assert t.lookup("bedrock", "arn:aws:bedrock:us-east-1:123:provisioned-model/abc") is None


def test_bare_names() -> None:
    assert bare_name("us.anthropic.claude-3-haiku") == "claude-3-haiku"
    assert bare_name("us-gov.meta.llama3-8b-instruct-v1:0") == "meta.llama3-8b-instruct-v1:0"
    assert bare_name("us.something") == "us.something"  # a geo-looking head without a namespace stays
    assert bare_name("gpt-3.5-turbo") == "gpt-3.5-turbo"
    assert bare_name("models/gemini-2.0-flash") == "gemini-2.0-flash"
    assert bare_name("mistralai/mistral-small") == "mistral-small"


def test_lookup_order_free_providers_and_bounds() -> None:
    own = Price(input=9, output=9)
    t = PriceTable({"mock/mock-1": own, "claude-3": Price(input=1, output=1)}, free=frozenset({"mock"}))
    assert t.lookup("mock", "mock-1") is own  # an override beats "free"
    assert t.lookup("mock", "mock-2") is FREE  # a mock model without a price costs 0 by design
    assert t.lookup("mock", "gpt-4o-mini") is DEFAULT_PRICES["gpt-4o-mini"]  # a known name keeps its price
    assert t.lookup("other", "mock-1") is None  # another provider's entry
    assert t.lookup("anthropic", "claude-3-haiku-x") is DEFAULT_PRICES["claude-3-haiku"]  # the longest wins
    assert t.lookup("anthropic", "claude-3-x").input == 1  # type: ignore[union-attr]
    assert t.lookup("anthropic", "claude-3-x") is t.lookup("anthropic", "claude-3-x")  # resolved once
    t._resolved = {(str(i), "m"): None for i in range(10_000)}  # full: answers without keeping more
    assert t.lookup("openai", "gpt-4o") is DEFAULT_PRICES["gpt-4o"] and ("openai", "gpt-4o") not in t._resolved
    assert t.estimate("openai", "gpt-4o", 1000, 100) == pytest.approx((1000 * 2.5 + 100 * 10) / M)
    assert t.estimate("openai", "nope", 1000, 100) == 0.0
    assert t.cost("openai", "nope", Usage(1, 1)) == 0.0


def _ctx(provider: str, model: str, usage: Usage | None, cache: str | None = None) -> RequestContext:
    ctx = RequestContext("chat", "r", "127.0.0.1")
    ctx.provider, ctx.upstream_model, ctx.usage, ctx.cache_status = provider, model, usage, cache
    return ctx


def test_a_call_is_priced_once_and_answers_without_an_upstream_call_cost_nothing() -> None:
    t = PriceTable(free=frozenset({"mock"}))
    asked: list[tuple[str, str]] = []
    cost = t.cost

    def counting(provider: str, model: str, usage: Usage) -> float:
        asked.append((provider, model))
        return cost(provider, model, usage)

    t.cost = counting  # type: ignore[method-assign]
    unpriced: list[str] = []
    meter = Meter(Recorder(enabled=False), log_requests=False, prices=t)
    meter.unpriced = lambda ctx: unpriced.append(ctx.upstream_model)
    u = Usage(prompt_tokens=1000, completion_tokens=100)
    full = (1000 * 0.15 + 100 * 0.60) / M
    early = _ctx("openai", "gpt-4o-mini", None)
    meter.cost(early)  # usage not known yet (a stream): nothing priced, nothing settled
    assert early.cost_usd == 0.0 and not early.priced and asked == []
    early.usage = u
    meter.finish(early)
    assert early.cost_usd == pytest.approx(full) and asked == [("openai", "gpt-4o-mini")]
    free = _ctx("mock", "mock-1", u)  # a JSON answer: priced before its headers, not again when it finishes
    meter.cost(free)
    meter.finish(free)
    assert free.cost_usd == 0.0 and asked.count(("mock", "mock-1")) == 1 and unpriced == ["mock-1"]
    hit = _ctx("", "", u, "hit")  # a hit has no provider: the cache stage priced its saving
    hit.saved_usd = 0.5
    meter.finish(hit)
    assert hit.cost_usd == 0.0 and hit.saved_usd == 0.5 and len(asked) == 2


def test_unpriced_calls_are_counted_and_logged_once_per_model() -> None:
    t = PriceTable(free=frozenset({"mock"}))
    before = metric_value("gateway_unpriced_calls_total", provider="openai", upstream_model="unit-unpriced")
    with capture_logs() as logs:
        for _ in range(3):
            t.count_unpriced(_ctx("openai", "unit-unpriced", Usage(5, 5)))
        t.count_unpriced(_ctx("openai", "gpt-4o", Usage(0, 0)))  # priced, just empty: not counted
        t.count_unpriced(_ctx("openai", "gpt-4o", Usage(0, 0)))
        t.count_unpriced(_ctx("mock", "mock-1", Usage(5, 5)))  # free by design: not counted
    assert metric_value("gateway_unpriced_calls_total", provider="openai", upstream_model="unit-unpriced") == before + 3
    assert metric_value("gateway_unpriced_calls_total", provider="openai", upstream_model="gpt-4o") == 0
    assert metric_value("gateway_unpriced_calls_total", provider="mock", upstream_model="mock-1") == 0
    warned = [e for e in logs if e["event"] == "unpriced_model"]
    assert [(e["provider"], e["upstream_model"]) for e in warned] == [("openai", "unit-unpriced")]
    t._unpriced = {(str(i), "m"): None for i in range(10_000)}  # full: still counted, just not remembered
    t.count_unpriced(_ctx("openai", "unit-unpriced", Usage(5, 5)))
    assert ("openai", "unit-unpriced") not in t._unpriced
    assert metric_value("gateway_unpriced_calls_total", provider="openai", upstream_model="unit-unpriced") == before + 4


async def test_unpriced_upstream_calls_are_counted_through_the_gateway(gateway_factory: GatewayFactory,
                                                                     mock_upstream: MockUpstream,
                                                                     http: aiohttp.ClientSession) -> None:
    labels = {"provider": "up", "upstream_model": "mock-1"}  # an OpenAI-type upstream: mock-1 has no price
    before = metric_value("gateway_unpriced_calls_total", **labels)
    mock_before = metric_value("gateway_unpriced_calls_total", provider="mock", upstream_model="mock-1")
    gw = await gateway_factory(quota_config(mock_upstream.url))
    for body in (chat("up"), chat("up", "again"), chat("demo")):
        status, h, _ = await post_chat(http, gw, body)
        assert status == 200 and h["x-gateway-cost-usd"] == "0.00000000"
    assert metric_value("gateway_unpriced_calls_total", **labels) == before + 2
    assert metric_value("gateway_unpriced_calls_total", provider="mock", upstream_model="mock-1") == mock_before
    async with http.post(gw.base_url + "/chat/completions", headers={"Authorization": "Bearer sk-test-dev"},
                         json={**chat("up", "streamed"), "stream": True}) as r:
        assert r.status == 200
        await r.read()
    assert metric_value("gateway_unpriced_calls_total", **labels) == before + 3


def test_check_config_lists_aliases_with_unpriced_route_models(tmp_path: Path,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    raw = {
        "providers": {"mock": {"type": "mock"}, "local": {"type": "openai", "base_url": "http://127.0.0.1:1/v1"},
                      "aws": {"type": "bedrock", "region": "us-east-1"}},
        "models": {"demo": {"route": [{"provider": "mock", "model": "mock-1"}]},
                   "nova": {"route": [{"provider": "aws", "model": "us.amazon.nova-pro-v1:0"}]},
                   "house": {"route": [{"provider": "local", "model": "my-finetune"},
                                       {"provider": "local", "model": "gpt-4o-mini"},
                                       {"provider": "aws", "model": "cohere.command-r-v1:0"}]}},
    }
    cfg = parse_config(raw, env={})
    assert unpriced_routes(cfg, PriceTable.from_config(cfg)) == {
        "house": ["local/my-finetune", "aws/cohere.command-r-v1:0"]}
    import yaml

    path = tmp_path / "gateway.yaml"
    path.write_text(yaml.safe_dump(raw))
    assert main(["check-config", "--config", str(path)]) == 0
    out = capsys.readouterr().out
    assert "unpriced aliases" in out and "alias 'house': local/my-finetune, aws/cohere.command-r-v1:0" in out
    assert "'nova'" not in out and "'demo'" not in out
    raw["pricing"] = {"my-finetune": {"input": 1, "output": 1}, "cohere.command-r": {"input": 0.5, "output": 1.5}}
    path.write_text(yaml.safe_dump(raw))
    assert main(["check-config", "--config", str(path)]) == 0
    assert "pricing: every route model has a price" in capsys.readouterr().out
