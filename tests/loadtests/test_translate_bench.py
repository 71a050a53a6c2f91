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
