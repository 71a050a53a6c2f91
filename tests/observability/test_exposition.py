"""The fast /metrics renderer says exactly what prometheus-client's own renderer says, byte for byte."""

from __future__ import annotations

import prometheus_client.metrics as pm
from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from proxy.observability import exposition
from proxy.observability import metrics as m

ODD = ('q"uo\\te', "new\nline", "", "é☃", "plain")  # label values needing escaping, and not
FLOATS = (0.1 + 0.2, 1e-7, 5e-324, 2.5e-5, 999999.9999999999, 1e6, 1234567.0, 123456789012.5, 1e16, 1e22,
          1.7976931348623157e308, float("inf"))


def samples(text: str) -> set[tuple[str, tuple[tuple[str, str], ...], float]]:
    # only the gateway's own series: process/GC collectors change between two renders
    return {(s.name, tuple(sorted(s.labels.items())), s.value)
            for fam in text_string_to_metric_families(text) for s in fam.samples if s.name.startswith("gateway_")}


def test_fast_render_matches_prometheus_client() -> None:
    m.REQUESTS.labels('exp-"quoted"\\alias', "p", "mdl", "k\nnewline", "t", "2xx").inc(3)
    m.REQUEST_DURATION.labels("exp-alias", "p", "2xx").observe(0.3)
    m.REQUEST_DURATION.labels("exp-alias", "p", "2xx").observe(200)
    m.CACHE_BYTES.set(12345)
    m.COST.labels("exp-alias", "p", "mdl", "k", "t").inc(0.000123)
    fast = m.render().decode()
    assert samples(fast) == samples(generate_latest(REGISTRY).decode())
    assert "# TYPE gateway_request_duration_seconds histogram" in fast
    assert 'le="+Inf"' in fast
    assert "python_info" in fast  # the default collectors are still rendered


def test_gateway_metrics_byte_identical() -> None:
    # the same collectors in a registry of their own: no process metrics moving between the two renders
    registry = CollectorRegistry()
    for metric in m.ALL:
        registry.register(metric)
    m.REQUESTS.labels("exp-bytes", "p", "mdl", "k", "t", "2xx").inc()
    m.TTFT.labels("exp-bytes", "p").observe(0.07)
    assert exposition.render(m.ALL, registry) == generate_latest(registry)


class Fixture:
    """A registry with every kind of series the renderer has a special case for."""

    def __init__(self, target_info: dict[str, str] | None = None) -> None:
        r = self.registry = CollectorRegistry(target_info=target_info)
        self.counter = Counter("t_requests", 'Help with a \\ backslash\nand a newline "quoted"', ("b", "a"), registry=r)
        self.plain = Counter("t_plain", "Unlabelled counter", registry=r)
        self.empty = Counter("t_empty", "Labelled, no children yet", ("x",), registry=r)
        self.gauge = Gauge("t_gauge", "Gauge", ("g",), registry=r)
        self.nan = Gauge("t_nan", "Unlabelled gauge", registry=r)
        self.fn = Gauge("t_fn", "Gauge with set_function", registry=r)
        self.hist = Histogram("t_seconds", "Histogram", ("zone", "alias"), buckets=(0.01, 0.5, 1, 2.5, 1e7), registry=r)
        self.neg = Histogram("t_neg", "Histogram with a negative bucket: no _sum", buckets=(-1, 0, 1), registry=r)
        self.metrics = [self.counter, self.plain, self.empty, self.gauge, self.nan, self.fn, self.hist, self.neg]
        self.fn_value = 2.5
        self.fn.set_function(lambda: self.fn_value)

    def fill(self) -> None:
        for i, v in enumerate(ODD):
            self.counter.labels(v, str(i)).inc(i)
            self.hist.labels(v, "x").observe(i * 0.3)
        for i, v in enumerate(FLOATS):
            self.counter.labels("float", str(i)).inc(v)
            self.gauge.labels(f"+{i}").set(v)
            self.gauge.labels(f"-{i}").set(-v)
        self.gauge.labels("nan").set(float("nan"))
        self.gauge.labels("zero").set(0.0)
        self.counter.labels("never", "incremented")
        self.counter.labels("reset", "int").inc(5)
        self.counter.labels("reset", "int").reset()  # the value is now the int 0
        self.counter.labels("reset", "int+2").reset()
        self.counter.labels("reset", "int+2").inc(2)  # the int 2
        self.plain.inc(1e9)
        self.nan.set(float("nan"))
        for v in (0.005, 0.3, 0.3, 2, 5e6, 1e12, float("inf")):
            self.hist.labels("eu", "a").observe(v)
        self.hist.labels("us", "b")
        for v in (-5, -0.5, 0.5, 3):
            self.neg.observe(v)

    def assert_same(self) -> None:
        fast = exposition.render(self.metrics, self.registry)
        assert fast.decode() == generate_latest(self.registry).decode()


def test_byte_identical_to_generate_latest() -> None:
    f = Fixture(target_info={"env": "test"})
    f.assert_same()  # nothing observed yet
    f.fill()
    f.assert_same()
    f.assert_same()  # cached lines, nothing changed


def test_byte_identical_after_changes() -> None:
    f = Fixture()
    f.fill()
    f.assert_same()
    # values move, series appear, a gauge goes 0.0 -> -0.0 (equal values, different text)
    f.counter.labels("float", "0").inc(1)
    f.counter.labels("new", "series").inc(7)
    f.empty.labels("first").inc()
    f.gauge.labels("zero").set(-0.0)
    f.gauge.labels("nan").set(1.5)
    f.hist.labels("eu", "a").observe(0.6)
    f.hist.labels("new", "child").observe(1e8)
    f.fn_value = -0.0
    f.assert_same()
    # removed and cleared children, then a removed series back with a fresh child
    f.counter.remove("plain", "4")
    f.gauge.clear()
    f.hist.remove("us", "b")
    f.assert_same()
    f.counter.labels("plain", "4").inc(0.25)
    f.gauge.labels("again").set(3)
    f.assert_same()
    assert len(exposition._series[f.gauge].lines) == 1  # the cache follows the children: nothing stale kept


def test_created_series_fall_back_to_prometheus_client() -> None:
    f = Fixture()
    f.fill()
    pm.enable_created_metrics()
    try:
        fast = exposition.render(f.metrics, f.registry)
        assert b"t_requests_created" in fast
        assert fast == generate_latest(f.registry)
    finally:
        pm.disable_created_metrics()
    f.assert_same()
