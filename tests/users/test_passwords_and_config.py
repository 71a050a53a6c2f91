"""Password hashes (Argon2id), `gateway hash-password`, and the `users:` section of gateway.yaml."""

from __future__ import annotations

import io

import pytest

from proxy.cli import main
from proxy.config import ConfigError, parse_config
from proxy.users.passwords import hash_password, verify_password


async def test_hash_is_argon2id_salted_and_verifies() -> None:
    a, b = hash_password("a long password"), hash_password("a long password")
    assert a.startswith("$argon2id$") and a != b  # salted
    assert await verify_password(a, "a long password")
    assert not await verify_password(a, "a long passwor")
    assert not await verify_password(None, "a long password")  # no password: never signs in
    assert not await verify_password("not a hash", "a long password")


async def test_cli_hash_password_reads_stdin(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO("hunter2hunter2\n"))
    assert main(["hash-password"]) == 0
    out = capsys.readouterr().out.strip()
    assert out.startswith("$argon2id$") and "hunter2" not in out
    assert await verify_password(out, "hunter2hunter2")
    monkeypatch.setattr("sys.stdin", io.StringIO("short\n"))
    assert main(["hash-password"]) == 2


def test_users_config() -> None:
    h = hash_password("whatever-it-is")
    cfg = parse_config({"users": [{"email": "Ann@Example.com", "name": "Ann", "role": "admin", "password_hash": h}],
                        "keys": [{"name": "k", "key": "sk-k", "user_id": "ann@example.com"}],
                        "console": {"session_ttl": "30m"}}, env={})
    assert cfg.users[0].id == "cfg:ann@example.com" and cfg.users[0].email == "ann@example.com"
    assert cfg.keys[0].user_id == "cfg:ann@example.com" and cfg.console.session_ttl == 1800
    assert parse_config({}, env={}).console.session_ttl == 12 * 3600
    for bad, words in (
        ({"users": [{"email": "a@example.com", "name": "A", "password": "clear"}]}, "password_hash"),
        ({"users": [{"email": "a@example.com", "name": "A", "password_hash": "plain"}]}, "Argon2id"),
        ({"users": [{"email": "a@example.com", "name": "A", "role": "boss"}]}, "users.0.role"),
        ({"users": [{"email": "a@example.com", "name": "A"}, {"email": "A@example.com", "name": "B"}]}, "unique"),
        ({"keys": [{"name": "k", "key": "sk-k", "user_id": "nobody@example.com"}]}, "keys.k.user_id"),
    ):
        with pytest.raises(ConfigError) as exc:
            parse_config(bad, env={})
        assert words in str(exc.value), (bad, str(exc.value))
