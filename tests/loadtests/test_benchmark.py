"""Smoke tests of loadtests/: the helpers work and the baseline pass-through forwards correctly.

No timing is asserted anywhere: performance is measured by `make bench`, never by unit tests.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from loadtests import benchmark
from loadtests.bench import procs
from loadtests.bench.configs import HERE, UPSTREAM_KEY, VARIANTS, base_gateway_config, deep_merge
from loadtests.bench.load import parse_tagged_json, summarize_profile
from loadtests.bench.net import chat_body, check_local, http, probe
from loadtests.bench.procs import configure_mock, start_baseline, start_mock
from loadtests.bench.report import machine_info, replace_section, write_docs
from loadtests.bench.verdicts import evaluate
from tests.conftest import IN_CI


def test_baseline_passthrough_forwards_json_and_streams(tmp_path: Path) -> None:
    mock, mock_url = start_mock(tmp_path, core=None)
    try:
        baseline, url = start_baseline(tmp_path, mock_url, core=None)
        try:
            chat = url + "/v1/chat/completions"
            for _ in range(2):
                status, _, data = http("POST", chat, chat_body(), {"Authorization": "Bearer anything"})
                assert status == 200
                answer = json.loads(data)
                assert answer["object"] == "chat.completion"
                assert answer["choices"][0]["message"]["content"]
            probe(chat, "anything", stream=True)  # raises unless 200 and ends with [DONE]
            assert baseline.cpu_seconds() >= 0
            rss, peak = baseline.memory_mib()
            assert 0 < rss <= peak
            status, _, data = http("GET", mock_url + "/_mock/stats")
            assert json.loads(data)["calls"]["/v1/chat/completions"] == 3
        finally:
            baseline.stop()
        assert not baseline.alive()
    finally:
        mock.stop()
    assert not procs._PROCS


def test_only_local_targets() -> None:
    with pytest.raises(ValueError):
        check_local("http://example.com/v1/chat/completions")
    with pytest.raises(ValueError):
        http("GET", "http://10.0.0.1:80/")
    assert check_local("http://127.0.0.1:9/x")


def test_variant_configs_are_valid_gateway_configs(tmp_path: Path) -> None:
    from proxy.config import parse_config

    for v in VARIANTS:
        cfg = deep_merge(base_gateway_config("http://127.0.0.1:9", tmp_path), v.config)
        parse_config(cfg, env={})
    merged = deep_merge({"a": {"b": 1, "c": 2}, "l": [1]}, {"a": {"b": 3}, "l": [2]})
    assert merged == {"a": {"b": 3, "c": 2}, "l": [2]}


def test_parse_args_sections() -> None:
    args = benchmark.parse_args(["--quick", "--only", "core,streams", "--variants", "gateway"])
    assert args.only == ["core", "streams"] and args.variants == ["gateway"] and args.duration == 2 and args.rounds == 2
    with pytest.raises(SystemExit):
        benchmark.parse_args(["--only", "nope"])


def test_replace_section_keeps_other_sections() -> None:
    doc = "# Benchmarks\n\nintro\n\n## Cache\n\ncache figures\n\n## Gateway core\n\nold\n\n## Quotas\n\nq\n"
    out = replace_section(doc, "## Gateway core", "## Gateway core\n\nnew\n")
    assert "old" not in out and "new" in out and "cache figures" in out and out.endswith("## Quotas\n\nq\n")
    assert replace_section(out, "## Gateway core", "## Gateway core\n\nnew\n") == out
    appended = replace_section("# Benchmarks\n", "## Gateway core", "## Gateway core\n\nx\n")
    assert appended == "# Benchmarks\n\n## Gateway core\n\nx\n"


def test_parse_tagged_json_and_profile_summary() -> None:
    assert parse_tagged_json("noise\nWRK_JSON {\"requests\": 3}\n", "WRK_JSON") == {"requests": 3}
    with pytest.raises(ValueError):
        parse_tagged_json("nothing", "WRK_JSON")
    collapsed = ("run (aiohttp/web.py:1);_serve (/w/proxy/handlers.py:120);finish (/w/proxy/metering.py:40) 3\n"
                 "run (aiohttp/web.py:1);_serve (/w/proxy/handlers.py:120) 1\n")
    s = summarize_profile(collapsed)
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
    return {"rounds": [m, m], "measured": m, "errors": 0, "rss_mib": 60.0, "hwm_mib": 70.0, "streams": 10,
            "cpu_per_stream_ms": 2.0, "client": "sseload"}


def test_report_renders_and_evaluates(tmp_path: Path) -> None:
    r: dict[str, Any] = {
        "machine": machine_info(),
        "args": {"quick": True, "duration": 4, "rounds": 2, "latency_duration": 2, "stream_duration": 2,
                 "streams": 10, "ramp": 1.0, "stream_tokens": 10},
        "direct": {"core": _load(8000, None), "latency": _load(2000, None, 0.4),
                   "streams": _load(2000, None), "concurrent": _streams(20.0),
                   "concurrent_light": _streams(5.0)},
        "baseline": {"core": _load(5000, 0.2), "latency": _load(1500, 0.3, 0.6),
                     "streams": _load(1000, 1.0), "concurrent": _streams(25.0),
                     "concurrent_light": _streams(6.0)},
        "gateways": {"gateway": {"core": _load(3500, 0.3), "latency": _load(1200, 0.4, 0.8),
                                 "streams": _load(800, 1.5), "concurrent": _streams(40.0),
                                 "concurrent_light": _streams(9.0)},
                     "metrics-off": {"error": "gateway[metrics-off] exited with 1:\nboom"}},
    }
    checks = evaluate(r)
    assert checks and all(c.ok or c.info for c in checks), [c for c in checks if not (c.ok or c.info)]
    assert any(c.info and c.verdict == "info" for c in checks)
    r["checks"] = [c.__dict__ | {"verdict": c.verdict} for c in checks]
    doc = tmp_path / "benchmarks.md"
    doc.write_text("# Benchmarks\n\n## Other\n\nkept\n")
    write_docs(r, doc)
    text = doc.read_text()
    assert "## Other\n\nkept" in text and "## Gateway core" in text and "PASS" in text
    assert "error: gateway[metrics-off] exited with 1:" in text
    assert "### 10 concurrent streams, 10 tokens at 10 tokens/s, started over 1 s (sseload)" in text
    assert "(lighter load, context)" in text and "Note on the concurrent streams" not in text
    # a saturated baseline: the report says why the added TTFC at that load measures queueing
    r["baseline"]["concurrent"]["measured"] = {**r["baseline"]["concurrent"]["measured"], "ttfc_p99_ms": 400.0}
    write_docs(r, doc)
    text = doc.read_text()
    assert "Note on the concurrent streams: at this load the bare pass-through itself adds 380 ms" in text
    assert "10 streams started within 1 s ask for 0.0 s of one core's time in about 2.0 s" in text


def test_sseload_counts_streams_chunks_and_errors(tmp_path: Path) -> None:
    """The compiled stream client of the concurrent-streams benchmark counts what a stream really did."""
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        if IN_CI:
            pytest.fail("no C compiler: loadtests/sseload.c cannot be built")
        pytest.skip("no C compiler to build loadtests/sseload.c")
    exe = tmp_path / "sseload"
    subprocess.run([cc, "-O2", "-Wall", "-Werror", "-o", str(exe), str(HERE / "sseload.c"), "-lm"], check=True)
    mock, mock_url = start_mock(tmp_path, core=None)
    port = mock_url.rsplit(":", 1)[1]

    def run(key: str = UPSTREAM_KEY) -> dict[str, Any]:
        out = subprocess.run([str(exe), "--port", port, "--key", key, "--model", "bench", "--streams", "5",
                              "--ramp", "0.05", "--rounds", "2", "--timeout", "10"],
                             capture_output=True, text=True, check=True, timeout=30).stdout
        return parse_tagged_json(out, "STREAMS_JSON")

    try:
        configure_mock(mock_url, {"reply": "lorem", "reply_tokens": 4, "tokens_per_s": 0.0})
        status, _, body = http("POST", mock_url + "/v1/chat/completions", chat_body(stream=True),
                                  {"Authorization": f"Bearer {UPSTREAM_KEY}"})
        assert status == 200 and body.endswith(b"data: [DONE]\n\n")
        events = body.count(b"data:")
        r = run()
        assert r["errors"] == 0 and [x["ok"] for x in r["rounds"]] == [5, 5]
        assert r["measured"]["chunks"] == 5 * events and r["measured"]["peak_concurrency"] >= 1
        assert 0 < r["measured"]["ttfc_p50_ms"] <= r["measured"]["ttfc_max_ms"]
        stats = json.loads(http("GET", mock_url + "/_mock/stats")[2])
        assert stats["calls"]["/v1/chat/completions"] == 1 + 10
        bad = run(key="sk-wrong")  # 401 from the mock: an error, not a stream
        assert bad["errors"] == 10 and bad["measured"]["error_kinds"] == {"http_error": 5}
        configure_mock(mock_url, {"reply": "lorem", "reply_tokens": 8, "cut_after": 2})
        cut = run()  # streams that stop before `data: [DONE]`
        assert cut["errors"] == 10 and cut["measured"]["ok"] == 0
    finally:
        mock.stop()


def test_instructions_reads_the_newest_callgrind_dump(tmp_path: Path) -> None:
    from loadtests import instructions

    out = tmp_path / "callgrind.gateway"
    with pytest.raises(RuntimeError, match="no dump"):
        instructions.total_instructions(out)
    (tmp_path / "callgrind.gateway.1").write_text("events: Ir\nsummary: 111\n")
    (tmp_path / "callgrind.gateway.2").write_text("version: 1\nevents: Ir\nfn=x\n0 5\ntotals: 1234567\n")
    os.utime(tmp_path / "callgrind.gateway.1", (1, 1))  # .2 is the newer dump
    assert instructions.total_instructions(out) == 1234567
    args = instructions.parse_args(["--stream", "--target", "baseline", "--requests", "50"])
    assert (args.stream, args.target, args.requests, args.warmup) == (True, "baseline", 50, 300)
