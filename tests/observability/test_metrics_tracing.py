"""Metrics values for a known sequence of requests, and W3C trace context propagation."""

from __future__ import annotations

import io

import orjson
from prometheus_client import REGISTRY

from proxy.config import LoggingConfig
from proxy.observability.logs import configure, flush
from tests.conftest import GatewayFactory, MockUpstream, auth, base_config


def sample(name: str, labels: dict[str, str]) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


async def test_known_sequence_metric_values(gateway_factory: GatewayFactory, http) -> None:  # type: ignore[no-untyped-def]
    cfg = base_config()
    cfg["keys"][0]["team"] = "metrics-team"
    cfg["models"]["metrics-alias"] = {"route": [{"provider": "mock", "model": "metrics-model"}]}
    gw = await gateway_factory(cfg)
    ok = {"alias": "metrics-alias", "provider": "mock", "upstream_model": "metrics-model", "key": "dev",
          "team": "metrics-team", "status_class": "2xx"}
    tok = {k: v for k, v in ok.items() if k != "status_class"}
    before = {
        "req": sample("gateway_requests_total", ok),
        "prompt": sample("gateway_tokens_total", {**tok, "type": "prompt"}),
        "completion": sample("gateway_tokens_total", {**tok, "type": "completion"}),
        "hist": sample("gateway_request_duration_seconds_count",
                       {"alias": "metrics-alias", "provider": "mock", "status_class": "2xx"}),
        "ttft": sample("gateway_time_to_first_token_seconds_count", {"alias": "metrics-alias", "provider": "mock"}),
    }
    client = gw.openai()
    for text in ("one two", "three four five"):
        await client.chat.completions.create(model="metrics-alias", messages=[{"role": "user", "content": text}])
    async for _ in await client.chat.completions.create(
            model="metrics-alias", stream=True, messages=[{"role": "user", "content": "six"}]):
        pass
    assert sample("gateway_requests_total", ok) - before["req"] == 3
    assert sample("gateway_tokens_total", {**tok, "type": "prompt"}) - before["prompt"] == 2 + 3 + 1
    assert sample("gateway_tokens_total", {**tok, "type": "completion"}) - before["completion"] == 2 + 3 + 1
    assert sample("gateway_request_duration_seconds_count",
                  {"alias": "metrics-alias", "provider": "mock", "status_class": "2xx"}) - before["hist"] == 3
    assert sample("gateway_time_to_first_token_seconds_count",
                  {"alias": "metrics-alias", "provider": "mock"}) - before["ttft"] == 1
    async with http.get(gw.url + "/metrics") as r:
        assert r.headers["Content-Type"].startswith("text/plain")
        assert "gateway_requests_total" in await r.text()


async def test_key_label_can_be_dropped(gateway_factory: GatewayFactory) -> None:
    cfg = base_config(metrics={"enabled": True, "key_label": False})
    cfg["models"]["nokey-alias"] = {"route": [{"provider": "mock", "model": "m"}]}
    gw = await gateway_factory(cfg)
    await gw.openai().chat.completions.create(model="nokey-alias", messages=[{"role": "user", "content": "x"}])
    labels = {"alias": "nokey-alias", "provider": "mock", "upstream_model": "m", "team": "", "status_class": "2xx"}
    assert sample("gateway_requests_total", {**labels, "key": ""}) == 1
    assert sample("gateway_requests_total", {**labels, "key": "dev"}) == 0


async def test_traceparent_propagated_and_logged(gateway_factory: GatewayFactory, mock_upstream: MockUpstream,
                                                 http) -> None:  # type: ignore[no-untyped-def]
    buf = io.BytesIO()
    configure(LoggingConfig(format="json"), stream=buf)
    try:
        gw = await gateway_factory(base_config(mock_upstream.url))
        trace_id = "4bf92f3577b34da6a3ce929d0e0e4736"
        tp = f"00-{trace_id}-00f067aa0ba902b7-01"
        async with http.post(gw.url + "/v1/chat/completions", headers={**auth(), "traceparent": tp},
                             json={"model": "up", "messages": [{"role": "user", "content": "x"}]}) as r:
            assert r.status == 200
        sent = mock_upstream.state.requests[-1]["headers"]["traceparent"]
        version, tid, parent, flags = sent.split("-")
        assert (version, tid, flags) == ("00", trace_id, "01")
        assert parent != "00f067aa0ba902b7"  # the gateway is a new span in the same trace
        async with http.post(gw.url + "/v1/chat/completions", headers={**auth(), "traceparent": "garbage"},
                             json={"model": "up", "messages": [{"role": "user", "content": "x"}]}) as r:
            assert r.status == 200
        assert "traceparent" not in mock_upstream.state.requests[-1]["headers"]
        flush()
        lines = [orjson.loads(x) for x in buf.getvalue().splitlines() if x.startswith(b"{")]
        traced = [x for x in lines if x.get("event") == "request" and x.get("trace_id") == trace_id]
        assert len(traced) == 1 and traced[0]["status"] == 200
    finally:
        configure(LoggingConfig(format="console"))


def test_json_logs_are_buffered_even_on_an_unbuffered_stdout(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """PYTHONUNBUFFERED=1 (Docker images) makes sys.stdout.buffer the raw file: the log writer must still
    batch lines (one write() per flush, not per request) and must never close the borrowed fd."""
    from proxy.observability.logs import get_logger

    path = tmp_path / "out.log"
    with open(path, "wb", buffering=0) as raw:  # what sys.stdout.buffer is under PYTHONUNBUFFERED=1
        assert isinstance(raw, io.RawIOBase)
        configure(LoggingConfig(format="json"), stream=raw)
        try:
            log = get_logger("gateway.test")
            for i in range(3):
                log.info("line", n=i)
            assert path.read_bytes() == b""  # still in the buffer
            flush()
            lines = [orjson.loads(x) for x in path.read_bytes().splitlines()]
            assert [x["n"] for x in lines] == [0, 1, 2] and lines[0]["level"] == "info"
        finally:
            configure(LoggingConfig(format="console"))
        import gc

        gc.collect()  # the dropped writer must not have closed the fd it borrowed
        raw.write(b"still open\n")
    assert path.read_bytes().endswith(b"still open\n")


def test_request_line_emitter_writes_what_structlog_writes(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """The per-request line skips structlog's bound logger, not its processors: the same bytes leave as
    from `get_logger().info(...)`, and a level above info or the console format are still honoured."""
    import time

    from proxy.observability.logs import get_logger, info_emitter

    monkeypatch.setattr(time, "time", lambda: 1764650000.0071)  # one timestamp for both lines
    fields = {"request_id": "r1", "key": "dev", "status": 200, "latency_ms": 1.25, "stream": False,
              "prompt_tokens": 3, "cost_usd": 1e-06}
    buf = io.BytesIO()
    configure(LoggingConfig(format="json"), stream=buf)
    try:
        get_logger("gateway.request").info("request", **fields)
        info_emitter("gateway.request", "request")(dict(fields))
        flush()
        via_structlog, via_emitter = buf.getvalue().splitlines()
        assert via_emitter == via_structlog
        assert orjson.loads(via_emitter)["timestamp"] == "2025-12-02T04:33:20.007Z"

        quiet = io.BytesIO()
        configure(LoggingConfig(format="json", level="warning"), stream=quiet)
        info_emitter("gateway.request", "request")(dict(fields))
        flush()
        assert quiet.getvalue() == b""

        console = io.StringIO()
        configure(LoggingConfig(format="console"), stream=console)
        info_emitter("gateway.request", "request")(dict(fields))
        assert "request" in console.getvalue() and "latency_ms=1.25" in console.getvalue()
    finally:
        configure(LoggingConfig(format="console"))
