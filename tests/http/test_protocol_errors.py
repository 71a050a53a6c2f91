"""Requests aiohttp's HTTP parser rejects before any handler runs (oversized header, malformed request line,
bad chunked encoding) are answered in OpenAI's error format and logged as one JSON line, no traceback:
raw sockets against the real `gateway serve` process."""

from __future__ import annotations

import asyncio
import io
import logging
import signal
from pathlib import Path

import orjson

from proxy.config import LoggingConfig
from proxy.http.serving import protocol_error
from proxy.observability.logs import configure, flush
from tests.conftest import GatewayFactory, base_config
from tests.http.test_server import start

SECRET = b"sk-" + b"s" * 9000  # a header value over max_field_size (8190): its bytes must not be echoed


async def exchange(port: int, raw: bytes) -> tuple[str, dict[str, str], bytes]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(raw)
        await writer.drain()
        data = await asyncio.wait_for(reader.read(), 10)  # the gateway closes the connection after the error
    finally:
        writer.close()
    head, _, body = data.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    headers = {k.lower(): v.strip() for k, _, v in (h.partition(":") for h in header_lines)}
    return status_line, headers, body


async def test_parser_errors_answer_in_openai_format_and_log_one_line(tmp_path: Path) -> None:
    exe = str(Path(__file__).resolve().parents[2] / ".venv/bin/gateway")
    proc, _, port = await start(tmp_path, exe, "serve")
    cases = [
        (b"GET /v1/models HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + SECRET + b"\r\n\r\n",
         431, "request_header_fields_too_large"),
        (b"GET /v1/models HTTP/1.1 trailing-junk\r\nHost: x\r\n\r\n", 400, "invalid_http_request"),
        (b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer sk-dev\r\n"
         b"Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\nZZ\r\n{}\r\n0\r\n\r\n",
         400, "invalid_http_request"),
    ]
    try:
        for raw, status, code in cases:
            status_line, headers, body = await exchange(port, raw)
            assert status_line.split(" ")[1] == str(status), (status_line, body)
            assert headers["content-type"].startswith("application/json")
            err = orjson.loads(body)["error"]
            assert set(err) == {"message", "type", "param", "code"}
            assert err["type"] == "invalid_request_error" and err["code"] == code and err["param"] is None
            assert b"sss" not in body
        # the server is fine afterwards
        status_line, _, body = await exchange(port, b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        assert " 200 " in status_line, body
    finally:
        proc.send_signal(signal.SIGTERM)
        out, _ = await asyncio.wait_for(proc.communicate(), 20)
    assert proc.returncode == 0
    assert b"Traceback" not in out and b"sss" not in out
    lines = [orjson.loads(line) for line in out.splitlines() if line.strip()]  # every line is JSON
    logged = [x for x in lines if x.get("event") == "http_protocol_error"]
    assert [(x["status"], x["code"], x["level"]) for x in logged] == [(s, c, "warning") for _, s, c in cases]
    assert [x["error"] for x in logged] == ["LineTooLong", "BadStatusLine", "BadHttpMessage"]


def test_aiohttp_log_records_become_one_json_line() -> None:
    """Whatever else aiohttp logs through the standard library comes out as one structured line each."""
    buf = io.BytesIO()
    configure(LoggingConfig(format="json"), stream=buf)
    try:
        try:
            raise RuntimeError("boom")
        except RuntimeError:
            logging.getLogger("aiohttp.server").exception("Error handling request from %s", "127.0.0.1")
        flush()
        lines = buf.getvalue().splitlines()
        assert len(lines) == 1
        line = orjson.loads(lines[0])
        assert line["event"] == "Error handling request from 127.0.0.1" and line["level"] == "error"
        assert "RuntimeError: boom" in line["exception"]
    finally:
        configure(LoggingConfig(format="console"))


async def test_non_http_bytes_get_a_json_400(gateway_factory: GatewayFactory) -> None:
    """TLS sent to the plain HTTP port (what scanners and misconfigured clients do)."""
    gw = await gateway_factory(base_config())
    port = int(gw.url.rsplit(":", 1)[1])
    status_line, headers, body = await exchange(port, b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + b"\0" * 64)
    assert " 400 " in status_line and headers["content-type"].startswith("application/json")
    err = orjson.loads(body)["error"]
    assert err["code"] == "invalid_http_request" and "TLS" in err["message"]


def test_what_escapes_the_handlers_is_a_json_500_or_504() -> None:
    err = protocol_error(500, RuntimeError("boom"))
    assert (err.status, err.code, err.type) == (500, "internal_error", "server_error")
    assert "boom" not in err.message
    err = protocol_error(504, None)
    assert (err.status, err.code, err.type) == (504, "timeout", "timeout_error")
