"""The `cli` provider: a local command-line model (llm, ollama run, a script...) as an upstream.

`command` is an argv list run with `asyncio.create_subprocess_exec` (never a shell); an argv item
containing `{model}` gets the route's model name substituted. The conversation is rendered as text
on stdin (a lone user message as is; otherwise `System:` / `User:` / `Assistant:` / `Tool:` blocks
ending with `Assistant:`), and stdout is the answer, streamed as chunks as it arrives (line by line
for the usual line-buffered CLI). Trailing newlines are not part of the answer.

* `timeout.total` (or the alias' total, whichever is shorter) bounds a call; the process is killed
  on timeout and when the client goes away.
* `max_concurrency` processes at most run at once; further calls wait for a slot.
* A non-zero exit is a 502 carrying the tail of stderr (with secret-looking values masked);
  a missing binary is a 503 `cli_not_found` (also reported by the health probe).
* CLIs report no usage: it is estimated at ~4 characters per token.
* The process inherits the gateway's environment (CLIs usually read their own keys from it).
"""

from __future__ import annotations

import asyncio
import codecs
import contextlib
import os
import shutil
import time
from collections.abc import AsyncIterator
from typing import Any

import orjson

from proxy.core.tokens import text_tokens
from proxy.infra.sse import frame
from proxy.providers.base import JSON, CallOptions, ChunkStream, Completion, Provider, RecordedStream, Usage
from proxy.providers.cli.config import CLIConfig
from proxy.providers.cli.errors import STDERR_TAIL, exit_error, not_found
from proxy.providers.shapes import (
    assistant_message,
    chat_completion,
    chunk,
    completion_id,
    usage_chunk,
)
from proxy.providers.transport import stream_cut, timeout_error

READ_SIZE = 65536
ROLE_LABELS = {"system": "System", "developer": "System", "user": "User", "assistant": "Assistant",
               "tool": "Tool"}


def text_of(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(p.get("text") or "" for p in content
                         if isinstance(p, dict) and p.get("type") == "text")
    return ""


def render_prompt(messages: list[Any]) -> str:
    """The conversation as plain text for a CLI's stdin."""
    if len(messages) == 1 and isinstance(messages[0], dict) and messages[0].get("role") == "user":
        return text_of(messages[0].get("content"))
    parts = [f"{ROLE_LABELS.get(str(m.get('role')), str(m.get('role')).title())}: {text_of(m.get('content'))}"
             for m in messages if isinstance(m, dict)]
    return "\n\n".join([*parts, "Assistant:"])


def build_argv(command: list[str], model: str) -> list[str]:
    return [a.replace("{model}", model) for a in command]


class OutputText:
    """stdout bytes -> text pieces: UTF-8 split across reads is joined, trailing newlines are held
    back (and dropped at the end) so the streamed answer equals the non-stream one."""

    def __init__(self) -> None:
        self._decoder = codecs.getincrementaldecoder("utf-8")("replace")
        self._held = ""

    def feed(self, data: bytes, final: bool = False) -> str:
        text = self._held + self._decoder.decode(data, final)
        body = text.rstrip("\r\n")
        self._held = "" if final else text[len(body):]
        return body


class _Run:
    """One running process: holds a concurrency slot until closed; closing kills it if still alive."""

    def __init__(self, proc: asyncio.subprocess.Process, gate: asyncio.Semaphore, deadline: float,
                 prompt: bytes) -> None:
        self.proc, self.gate, self.deadline = proc, gate, deadline
        self.stderr = b""
        # stdin is fed concurrently: a CLI that writes a lot before reading its input must not deadlock
        self._tasks = [asyncio.ensure_future(self._feed_stdin(prompt)),
                       asyncio.ensure_future(self._drain_stderr())]
        self._closed = False

    async def _feed_stdin(self, prompt: bytes) -> None:
        assert self.proc.stdin is not None
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):  # the CLI may not read stdin
            self.proc.stdin.write(prompt)
            await self.proc.stdin.drain()
            self.proc.stdin.close()

    async def _drain_stderr(self) -> None:
        assert self.proc.stderr is not None
        while data := await self.proc.stderr.read(READ_SIZE):
            self.stderr = (self.stderr + data)[-4 * STDERR_TAIL:]  # keep a tail; a chatty CLI must not block

    def _left(self) -> float:
        return max(0.0, self.deadline - time.monotonic())

    async def read(self) -> bytes:
        """The next stdout bytes available (b"" at the end)."""
        assert self.proc.stdout is not None
        try:
            async with asyncio.timeout(self._left()):
                return await self.proc.stdout.read(READ_SIZE)
        except TimeoutError:
            raise timeout_error("CLI model exceeded its total timeout") from None

    async def wait(self) -> int:
        try:
            async with asyncio.timeout(self._left()):
                code = await self.proc.wait()
                await self._tasks[1]  # the whole stderr tail
                return code
        except TimeoutError:
            raise timeout_error("CLI model exceeded its total timeout") from None

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            if self.proc.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    self.proc.kill()
                await self.proc.wait()
            for task in self._tasks:
                task.cancel()
        finally:
            self.gate.release()


class CLIProvider(Provider):
    cfg: CLIConfig

    def __init__(self, name: str, cfg: CLIConfig) -> None:
        super().__init__(name, cfg)
        self.gate = asyncio.Semaphore(cfg.max_concurrency)

    def _program(self) -> str:
        assert self.cfg.command, "validated by the config"
        return self.cfg.command[0]

    async def _start(self, body: JSON, model: str, opts: CallOptions) -> tuple[_Run, str]:
        prompt = render_prompt(body.get("messages") or [])
        argv = build_argv(self.cfg.command or [], model)
        deadline = time.monotonic() + min(self.cfg.timeout.total, opts.total_timeout)
        try:
            async with asyncio.timeout(max(0.0, deadline - time.monotonic())):
                await self.gate.acquire()
        except TimeoutError:
            raise timeout_error("waiting for a free CLI slot") from None
        try:
            proc = await asyncio.create_subprocess_exec(
                *argv, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE, limit=1 << 20)
        except (FileNotFoundError, PermissionError, NotADirectoryError):
            self.gate.release()
            raise not_found(argv[0]) from None
        except BaseException:
            self.gate.release()
            raise
        return _Run(proc, self.gate, deadline, prompt.encode()), prompt

    async def complete(self, body: JSON, model: str, opts: CallOptions) -> Completion:
        run, prompt = await self._start(body, model, opts)
        try:
            out = []
            while data := await run.read():
                out.append(data)
            code = await run.wait()
            if code != 0:
                raise exit_error(self._program(), code, run.stderr)
        finally:
            await run.close()
        text = OutputText().feed(b"".join(out), final=True)
        usage = Usage(text_tokens(prompt), text_tokens(text))
        data = chat_completion(completion_id(), model, assistant_message(text), "stop", usage)
        return Completion(body=orjson.dumps(data), usage=usage, model=model, finish_reason="stop", data=data)

    async def stream(self, body: JSON, model: str, opts: CallOptions) -> ChunkStream:
        run, prompt = await self._start(body, model, opts)
        translator = RecordedStream(body, model)
        cid, created = completion_id(), int(time.time())
        text = OutputText()
        try:  # wait for the first output so an immediate failure is still a clean, retryable error
            while (data := await run.read()) and not (first := text.feed(data)):
                pass
            if not data:
                first = text.feed(b"", final=True)
                code = await run.wait()
                if code != 0:
                    raise exit_error(self._program(), code, run.stderr)
        except BaseException:
            await run.close()
            raise

        def out(delta: JSON, finish: str | None = None) -> bytes:
            return frame(orjson.dumps(chunk(cid, created, model, delta, finish)))

        async def gen() -> AsyncIterator[bytes]:
            answer = [first]
            try:
                yield out({"role": "assistant", "content": ""})
                if first:
                    yield out({"content": first})
                ended = not data  # the first read may already have hit the end of stdout
                while not ended:
                    more = await run.read()
                    ended = not more
                    if piece := text.feed(more, final=ended):
                        answer.append(piece)
                        yield out({"content": piece})
                code = await run.wait()
                if code != 0:
                    raise stream_cut(exit_error(self._program(), code, run.stderr).message)
                translator.usage = Usage(text_tokens(prompt), text_tokens("".join(answer)))
                translator.finish_reason = "stop"
                yield out({}, "stop")
                if translator.include_usage:
                    yield frame(orjson.dumps(usage_chunk(cid, created, model, translator.usage)))
            finally:
                await run.close()

        return ChunkStream(gen(), translator, run.close)

    async def probe(self) -> None:
        program = self._program()
        found = shutil.which(program) if os.sep not in program else (program if os.access(program, os.X_OK)
                                                                    else None)
        if not found:
            raise not_found(program)
