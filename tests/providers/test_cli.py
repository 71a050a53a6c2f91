"""The `cli` provider against a fake command-line model (tests/fixtures/cli/fake_model.py)."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

import orjson
import pytest

from proxy.core.errors import UpstreamError
from proxy.infra import sse
from proxy.providers.base import CallOptions
from proxy.providers.cli.config import CLIConfig
from proxy.providers.cli.errors import redact
from proxy.providers.cli.provider import CLIProvider, OutputText, render_prompt
from tests.providers.goldens import FIXTURES

FAKE = str(FIXTURES / "cli" / "fake_model.py")
OPTS = CallOptions()


def provider(**cfg: object) -> CLIProvider:
    return CLIProvider("local", CLIConfig(**{"command": [sys.executable, FAKE, "{model}"], **cfg}))


def user(text: str) -> dict:
    return {"messages": [{"role": "user", "content": text}]}


def alive(pid_file: Path) -> bool:
    try:
        os.kill(int(pid_file.read_text()), 0)
    except ProcessLookupError:
        return False
    return True


async def wait_for(path: Path) -> None:
    for _ in range(200):
        if path.exists() and path.read_text():
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"{path} never written")


def test_render_prompt() -> None:
    assert render_prompt([{"role": "user", "content": "just this"}]) == "just this"
    text = render_prompt([{"role": "system", "content": "Be nice."},
                          {"role": "user", "content": [{"type": "text", "text": "Hi"}]},
                          {"role": "assistant", "content": "Hello"}, {"role": "user", "content": "Bye"}])
    assert text == "System: Be nice.\n\nUser: Hi\n\nAssistant: Hello\n\nUser: Bye\n\nAssistant:"


def test_output_text_and_redaction() -> None:
    out = OutputText()
    assert [out.feed(b"a\n"), out.feed(b"b\xc3"), out.feed(b"\xa9\n\n"), out.feed(b"", final=True)] == \
        ["a", "\nb", "\u00e9", ""]
    assert redact("api_key=sk-abc123456789 token: xyz Bearer abcdefghijk AKIAABCDEFGHIJKLMNOP") == \
        "api_key=*** token: *** *** ***"


async def test_complete_substitutes_model_and_estimates_usage() -> None:
    c = await provider().complete(user("hello big world"), "tiny-llm", OPTS)
    data = orjson.loads(c.body)
    assert data["choices"][0]["message"]["content"] == "model=tiny-llm\nhello\nbig\nworld"
    assert data["object"] == "chat.completion" and data["model"] == "tiny-llm" and c.finish_reason == "stop"
    assert (c.usage.prompt_tokens, c.usage.completion_tokens) == (4, 8)  # ~4 characters a token
    assert data["usage"]["total_tokens"] == 12


async def test_stream_equals_complete() -> None:
    p = provider()
    body = {**user("one two slow"), "stream": True, "stream_options": {"include_usage": True}}
    s = await p.stream(body, "m", OPTS)
    chunks = [orjson.loads(c) for c in sse.payloads([b async for b in s.frames])]
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])
    assert text == "model=m\none\ntwo\nslow"
    assert chunks[-2]["choices"][0]["finish_reason"] == "stop"
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["completion_tokens"] == s.usage.completion_tokens
    assert s.finish_reason == "stop" and len({c["id"] for c in chunks}) == 1


async def test_silent_cli_gives_empty_answer() -> None:
    c = await provider().complete(user("silent"), "m", OPTS)
    assert orjson.loads(c.body)["choices"][0]["message"]["content"] == ""
    s = await provider().stream(user("silent"), "m", OPTS)
    blocks = [b async for b in s.frames]
    assert [orjson.loads(x)["choices"][0]["finish_reason"] for x in sse.payloads(blocks)] == [None, "stop"]


@pytest.mark.parametrize("stream", [False, True])
async def test_nonzero_exit_is_502_with_redacted_stderr(stream: bool) -> None:
    p = provider()
    with pytest.raises(UpstreamError) as e:
        await (p.stream(user("fail"), "m", OPTS) if stream else p.complete(user("fail"), "m", OPTS))
    err = e.value
    assert err.status == 502 and err.code == "cli_error" and err.retryable
    assert "exited with status 3" in err.message and "rejected" in err.message
    assert "sk-secret" not in err.message and "abc.def.ghi" not in err.message
    assert FAKE not in err.message  # argv is not echoed
    assert p.gate._value == 1 + 3  # slot released (default max_concurrency 4)


async def test_missing_binary() -> None:
    p = provider(command=["/nonexistent/bin/llm-cli", "-m", "{model}"])
    for call in (p.complete(user("x"), "m", OPTS), p.stream(user("x"), "m", OPTS), p.probe()):
        with pytest.raises(UpstreamError) as e:
            await call
        assert (e.value.status, e.value.code) == (503, "cli_not_found") and "llm-cli" in e.value.message
    await provider().probe()  # python exists
    with pytest.raises(UpstreamError):
        await provider(command=["no-such-command-xyz"]).probe()


async def test_timeout_kills_the_process(tmp_path: Path) -> None:
    pid = tmp_path / "pid"
    p = provider(timeout={"total": 0.5})
    with pytest.raises(UpstreamError) as e:
        await p.complete(user(f"sleep pid:{pid}"), "m", OPTS)
    assert e.value.status == 504 and e.value.kind == "timeout"
    assert not alive(pid)
    assert p.gate._value == 4


async def test_cancel_kills_the_process(tmp_path: Path) -> None:
    pid = tmp_path / "pid"
    p = provider()
    task = asyncio.create_task(p.stream(user(f"sleep pid:{pid}"), "m", OPTS))
    await wait_for(pid)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert not alive(pid) and p.gate._value == 4


async def test_client_going_away_mid_stream_kills_and_frees_the_slot(tmp_path: Path) -> None:
    pid = tmp_path / "pid"
    p = provider(max_concurrency=1)
    s = await p.stream(user(f"pid:{pid} slow a b c d e f g h i j k l m n o p"), "m", OPTS)
    assert (await anext(s.frames)) and (await anext(s.frames))
    waiting = asyncio.create_task(p.complete(user("second"), "m", OPTS))
    await asyncio.sleep(0.2)
    assert not waiting.done()  # max_concurrency 1: the second call waits for the slot
    await s.aclose()
    assert not alive(pid)
    c = await asyncio.wait_for(waiting, 5)
    assert orjson.loads(c.body)["choices"][0]["message"]["content"].endswith("second")


async def test_large_prompt_does_not_block() -> None:
    body = {"messages": [{"role": "system", "content": "x " * 400_000}, {"role": "user", "content": "hi"}]}
    c = await provider().complete(body, "m", OPTS)
    assert orjson.loads(c.body)["choices"][0]["message"]["content"] == "model=m\nhi"
    assert c.usage.prompt_tokens > 200_000
