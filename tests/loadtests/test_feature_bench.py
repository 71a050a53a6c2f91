"""Smoke test of loadtests/feature_bench.py: arguments, checks and the docs sections (no load is run)."""

from __future__ import annotations

from pathlib import Path

from loadtests import feature_bench
from loadtests.bench.feature_report import checks, write_docs

MACHINE = {"date": "2026-01-01 00:00 UTC", "nproc": 2, "cpu_model": "cpu", "kernel": "6", "python": "3.11",
           "aiohttp": "3", "commit": "abc"}


def test_args_and_sections(tmp_path: Path) -> None:
    a = feature_bench.parse_args(["--quick", "--only", "metrics,cache"])
    assert a.only == ["metrics", "cache"] and a.ledger_duration == 20
    core = {"rps": 1000.0, "cpu_per_req_ms": 0.3, "p50_ms": 1.0, "p99_ms": 2.0, "errors": 0, "proxy_core_other": 0.0}
    done = {
        "metrics": {"metrics-off": core, "metrics-on": core | {"rps": 900.0}, "cost": 0.1,
                    "render": {"median_ms": 10.0, "times_ms": [10.0], "series": 5, "bytes": 100,
                               "changed_median_ms": 60.0, "changed_ms": [60.0], "cold_ms": 300.0}},
        "cache": {"miss_p50_ms": 200.0, "hit_p50_ms": 1.0, "speedup": 200.0, "rps_ratio": 1.5,
                  "herd_upstream_calls": 1, "cache-off": core, "cache-hit": core},
    }
    # cost 10% > 5%; the worst-case render (every series changed) 60 ms > 50 ms; the unchanged one passes
    assert [ok for *_, ok in checks("metrics", done["metrics"])] == [False, False, True]
    assert all(ok for *_, ok in checks("cache", done["cache"]))
    doc = tmp_path / "benchmarks.md"
    doc.write_text("# Benchmarks\n\n## Gateway core\n\nkeep me\n\n## Metrics\n\nstale-section-text\n\n## Resilience\n\nkeep too\n")
    write_docs(done, MACHINE, a, doc)
    text = doc.read_text()
    assert "keep me" in text and "keep too" in text and "stale-section-text" not in text
    assert text.count("## Metrics") == 1 and "## Response cache" in text


def test_webhooks_section_checks_and_docs(tmp_path: Path) -> None:
    a = feature_bench.parse_args(["--quick", "--only", "webhooks"])
    core = {"rps": 1000.0, "cpu_per_req_ms": 0.3, "p50_ms": 10.0, "p99_ms": 20.0, "errors": 0, "proxy_core_other": 0.0}
    r = {"webhooks-off": core, "webhooks-on": core | {"rps": 950.0, "p50_ms": 10.4, "cpu_with_delivery_ms": 0.5},
         "rps_ratio": 0.95, "p50_delta_ms": 0.4, "drain_s": [1.0], "receiver": {"count": 10, "unique": 10},
         "requests_served": 10.0, "at_end_of_load": {'gateway_webhook_deliveries_total{event="x",outcome="delivered"}': 8.0},
         "after_drain": {"gateway_webhook_dropped_events_total": 0.0}}
    assert [ok for *_, ok in checks("webhooks", r)] == [True, True, True]
    slow = r | {"rps_ratio": 0.85, "p50_delta_ms": 3.0, "receiver": {"count": 9, "unique": 9}}
    assert [ok for *_, ok in checks("webhooks", slow)] == [False, False, False]
    doc = tmp_path / "benchmarks.md"
    doc.write_text("# Benchmarks\n\n## Gateway core\n\nkeep me\n")
    write_docs({"webhooks": r}, MACHINE, a, doc)
    text = doc.read_text()
    assert "keep me" in text and "## Webhooks" in text and "10 distinct webhook-ids" in text
