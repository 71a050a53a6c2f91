"""Smoke test of loadtests/translate_bench.py: it runs and checks what it drives (no timing is asserted)."""

from __future__ import annotations

from loadtests import translate_bench as tb


def test_translate_bench_runs_every_path() -> None:
    results = tb.bench(streams=2, rounds=1, tokens=5, modes=["event", "all"])
    for mode in ("event", "all"):
        assert set(results[mode]) == set(tb.PATHS)
        # role chunk + 5 text chunks + finish chunk (Gemini: the role chunk carries the first word)
        assert {p: r["chunks"] for p, r in results[mode].items()} == {"openai": 7, "anthropic": 7, "gemini": 6}
    assert set(results["request_us"]) == set(tb.PATHS)


def test_translate_bench_inbounds_run() -> None:
    for inbound in ("messages", "responses"):
        results = tb.bench_messages(streams=2, rounds=1, tokens=5, modes=["event", "all"], inbound=inbound)
        assert {k for k in results if k != "request_us"} == {"event/openai", "event/anthropic", "all/openai",
                                                             "all/anthropic"}
        assert results["event/openai"]["chunks"] == 7 and results["request_us"] > 0
