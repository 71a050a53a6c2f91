"""Smoke tests of loadtests/: the helpers work and the baseline pass-through forwards correctly.

No timing is asserted anywhere: performance is measured by `make bench`, never by unit tests.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from loadtests import benchmark as bm


def test_baseline_passthrough_forwards_json_and_streams(tmp_path: Path) -> None:
    mock, mock_url = bm.start_mock(tmp_path, core=None)
    try:
        baseline, url = bm.start_baseline(tmp_path, mock_url, core=None)
        try:
            chat = url + "/v1/chat/completions"
            for _ in range(2):
                status, _, data = bm.http("POST", chat, bm.chat_body(), {"Authorization": "Bearer anything"})
                assert status == 200
                answer = json.loads(data)
                assert answer["object"] == "chat.completion"
                assert answer["choices"][0]["message"]["content"]
            bm.probe(chat, "anything", stream=True)  # raises unless 200 and ends with [DONE]
            assert baseline.cpu_seconds() >= 0
            rss, peak = baseline.memory_mib()
            assert 0 < rss <= peak
            status, _, data = bm.http("GET", mock_url + "/_mock/stats")
            assert json.loads(data)["calls"]["/v1/chat/completions"] == 3
        finally:
            baseline.stop()
        assert not baseline.alive()
    finally:
        mock.stop()
    assert not bm._PROCS


def test_only_local_targets() -> None:
    with pytest.raises(ValueError):
        bm.check_local("http://example.com/v1/chat/completions")
    with pytest.raises(ValueError):
        bm.http("GET", "http://10.0.0.1:80/")
    assert bm.check_local("http://127.0.0.1:9/x")


def test_variant_configs_are_valid_gateway_configs(tmp_path: Path) -> None:
    from proxy.config import parse_config

    for v in bm.VARIANTS:
        cfg = bm.deep_merge(bm.base_gateway_config("http://127.0.0.1:9", tmp_path), v.config)
        parse_config(cfg, env={})
    merged = bm.deep_merge({"a": {"b": 1, "c": 2}, "l": [1]}, {"a": {"b": 3}, "l": [2]})
    assert merged == {"a": {"b": 3, "c": 2}, "l": [2]}


def test_parse_args_sections() -> None:
    args = bm.parse_args(["--quick", "--only", "core,streams", "--variants", "gateway"])
    assert args.only == ["core", "streams"] and args.variants == ["gateway"] and args.duration == 2 and args.rounds == 2
    with pytest.raises(SystemExit):
        bm.parse_args(["--only", "nope"])


def test_replace_section_keeps_other_sections() -> None:
    doc = "# Benchmarks\n\nintro\n\n## Cache\n\ncache figures\n\n## Gateway core\n\nold\n\n## Quotas\n\nq\n"
    out = bm.replace_section(doc, "## Gateway core", "## Gateway core\n\nnew\n")
    assert "old" not in out and "new" in out and "cache figures" in out and out.endswith("## Quotas\n\nq\n")
    assert bm.replace_section(out, "## Gateway core", "## Gateway core\n\nnew\n") == out
    appended = bm.replace_section("# Benchmarks\n", "## Gateway core", "## Gateway core\n\nx\n")
    assert appended == "# Benchmarks\n\n## Gateway core\n\nx\n"


def test_parse_tagged_json_and_profile_summary() -> None:
    assert bm.parse_tagged_json("noise\nWRK_JSON {\"requests\": 3}\n", "WRK_JSON") == {"requests": 3}
    with pytest.raises(ValueError):
        bm.parse_tagged_json("nothing", "WRK_JSON")
    collapsed = ("run (aiohttp/web.py:1);_serve (/w/proxy/handlers.py:120);finish (/w/proxy/metering.py:40) 3\n"
                 "run (aiohttp/web.py:1);_serve (/w/proxy/handlers.py:120) 1\n")
    s = bm.summarize_profile(collapsed)
    assert s["samples"] == 4
    assert s["inclusive_proxy"][0] == ("_serve (/w/proxy/handlers.py)", 100.0)
    assert s["self"][0] == ("finish (/w/proxy/metering.py)", 75.0)


def _load(rps: float, cpu_ms: float | None, p50: float = 1.0) -> dict[str, Any]:
    return {"rps": rps, "requests": int(rps * 10), "p50_ms": p50, "p99_ms": p50 * 3, "errors": 0,
            "cpu_per_req_ms": cpu_ms, "rss_mib": 50.0 if cpu_ms else None, "proxy_core_other": 0.01,
            "load_core_busy": 0.9}


def _streams(p99: float) -> dict[str, Any]:
    m = {"ok": 10, "errors": 0, "peak_concurrency": 10, "ttfc_p50_ms": p99 / 2, "ttfc_p99_ms": p99,
         "total_p99_ms": 1100.0}
    return {"rounds": [m, m], "measured": m, "errors": 0, "rss_mib": 60.0, "hwm_mib": 70.0}


def test_report_renders_and_evaluates(tmp_path: Path) -> None:
    r: dict[str, Any] = {
        "machine": bm.machine_info(),
        "args": {"quick": True, "duration": 4, "rounds": 2, "latency_duration": 2, "stream_duration": 2,
                 "streams": 10},
        "direct": {"core": _load(8000, None), "latency": _load(2000, None, 0.4),
                   "streams": _load(2000, None), "concurrent": _streams(20.0)},
        "baseline": {"core": _load(5000, 0.2), "latency": _load(1500, 0.3, 0.6),
                     "streams": _load(1000, 1.0), "concurrent": _streams(25.0)},
        "gateways": {"gateway": {"core": _load(3500, 0.3), "latency": _load(1200, 0.4, 0.8),
                                 "streams": _load(800, 1.5), "concurrent": _streams(40.0)},
                     "metrics-off": {"error": "gateway[metrics-off] exited with 1:\nboom"}},
    }
    checks = bm.evaluate(r)
    assert checks and all(c.ok or c.info for c in checks), [c for c in checks if not (c.ok or c.info)]
    assert any(c.info and c.verdict == "info" for c in checks)
    r["checks"] = [c.__dict__ | {"verdict": c.verdict} for c in checks]
    doc = tmp_path / "benchmarks.md"
    doc.write_text("# Benchmarks\n\n## Other\n\nkept\n")
    bm.write_docs(r, doc)
    text = doc.read_text()
    assert "## Other\n\nkept" in text and "## Gateway core" in text and "PASS" in text
    assert "error: gateway[metrics-off] exited with 1:" in text
