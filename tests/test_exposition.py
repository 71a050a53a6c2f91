"""The fast /metrics renderer says exactly what prometheus-client's own renderer says."""

from __future__ import annotations

from prometheus_client import REGISTRY, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from proxy import metrics as m


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
