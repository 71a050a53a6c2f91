"""`gateway` command line: serve, migrate, mock-upstream, check-config, hash-key, hash-password."""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import sys
from collections.abc import Sequence

from proxy.config import ConfigError, GatewayConfig, load_config
from proxy.providers.settings import MockBehaviour


def _use_uvloop() -> None:
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a hard dependency; keep running without it
        return
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())


def startup_banner(cfg: GatewayConfig, host: str, port: int) -> str:
    lines = [f"gateway listening on http://{host}:{port}  (OpenAI base_url: http://{host}:{port}/v1)"]
    live = cfg.live_aliases()
    lines.append("live aliases: " + (", ".join(live) if live else "(none)"))
    for alias in cfg.models:
        if alias not in live:
            lines.append(f"  alias {alias!r} is not live: none of its providers is enabled")
    for name, p in cfg.providers.items():
        if not p.enabled:
            lines.append(f"provider {name!r} ({p.type}) disabled: {p.disabled_reason}")
    if not cfg.keys:
        lines.append("warning: no keys in gateway.yaml; only keys created through the admin API can call")
    return "\n".join(lines)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a host name (or 0.0.0.0's friends): assume reachable from elsewhere


def dev_keys_refusal(cfg: GatewayConfig, host: str) -> str | None:
    """Why serving on `host` with these keys is refused, or None: a documented default key on a
    non-loopback address lets anyone who read the README in."""
    # imported here: auth loads aiohttp, which the other commands skip
    from proxy.auth.authenticator import documented_defaults_in

    found = documented_defaults_in(cfg)
    if not found or is_loopback(host):
        return None
    lines = [f"refusing to serve on {host}: these keys are documented defaults that anyone can read:"]
    lines += [f"  {where}: set {var} to a secret of your own" for where, var in found]
    lines.append("(or listen on 127.0.0.1, or pass --allow-dev-keys for a throwaway setup)")
    return "\n".join(lines)


def cmd_serve(args: argparse.Namespace) -> int:
    try:
        cfg = load_config(args.config)
    except ConfigError as err:
        print(err, file=sys.stderr)
        return 2
    host = args.host or cfg.listen.host
    port = args.port if args.port is not None else cfg.listen.port
    cfg.listen.host, cfg.listen.port = host, port
    refusal = None if args.allow_dev_keys else dev_keys_refusal(cfg, host)
    if refusal:
        print(refusal, file=sys.stderr)
        return 2
    banner = startup_banner(cfg, host, port)
    if args.workers > 1:
        from proxy.workers import run_workers

        print(banner + f"\nworkers: {args.workers} (SO_REUSEPORT)", flush=True)
        return run_workers(args.workers, lambda: _serve_one(cfg, reuse_port=True))
    print(banner, flush=True)
    _serve_one(cfg, reuse_port=args.reuse_port)
    return 0


def _serve_one(cfg: GatewayConfig, reuse_port: bool) -> None:
    # imported here so `--workers` can set PROMETHEUS_MULTIPROC_DIR before prometheus_client loads
    from proxy.app import build_app
    from proxy.http.serving import run
    from proxy.observability.logs import configure

    configure(cfg.logging)
    _use_uvloop()
    run(build_app(cfg), cfg.listen.host, cfg.listen.port, shutdown_timeout=cfg.listen.shutdown_timeout,
        reuse_port=reuse_port)


def cmd_mock_upstream(args: argparse.Namespace) -> int:
    try:  # a development tool: installed from a checkout (`make install`), not shipped in the image
        from mockupstream.server import run_mock_upstream
    except ImportError:
        print("gateway: the mock upstream is a development tool that lives in the source checkout; "
              "install the gateway from it (`make install` or `pip install -e '.[dev]'`)", file=sys.stderr)
        return 2

    behaviour = MockBehaviour(reply=args.reply, reply_tokens=args.reply_tokens, ttft=args.ttft,
                              tokens_per_s=args.tokens_per_s, latency=args.latency,
                              error_status=args.error_status, error_rate=args.error_rate,
                              cut_after=args.cut_after)
    _use_uvloop()
    run_mock_upstream(args.host, args.port, behaviour, args.api_key)
    return 0


def cmd_check_config(args: argparse.Namespace) -> int:
    try:
        cfg = load_config(args.config)
    except ConfigError as err:
        print(err, file=sys.stderr)
        return 2
    print(startup_banner(cfg, cfg.listen.host, cfg.listen.port))
    print(unpriced_report(cfg))
    return 0


def unpriced_report(cfg: GatewayConfig) -> str:
    """The aliases whose route models have no price: their calls would be metered as $0."""
    from proxy.metering.pricing import PriceTable, unpriced_routes

    missing = unpriced_routes(cfg, PriceTable.from_config(cfg))
    if not missing:
        return "pricing: every route model has a price"
    lines = ["unpriced aliases (their calls count as $0 and in gateway_unpriced_calls_total; "
             "add the models under `pricing:`):"]
    lines += [f"  alias {alias!r}: {', '.join(models)}" for alias, models in missing.items()]
    return "\n".join(lines)


def cmd_migrate(args: argparse.Namespace) -> int:
    """Apply the ledger database's migrations and exit: a deploy step before replicas start. `serve` does
    the same at startup, but on a database already at the newest revision it never loads Alembic."""
    try:
        cfg = load_config(args.config)
    except ConfigError as err:
        print(err, file=sys.stderr)
        return 2
    from proxy.ledger import LedgerStore

    async def migrate() -> bool:
        store = LedgerStore.from_config(cfg.database)
        try:
            return await store.migrate()
        finally:
            await store.close()

    try:
        changed = asyncio.run(migrate())
    except Exception as err:
        print(f"migrate failed: {type(err).__name__}: {err}", file=sys.stderr)
        return 1
    print("ledger database migrated to the newest revision" if changed
          else "ledger database already at the newest revision")
    return 0


def cmd_hash_key(args: argparse.Namespace) -> int:
    from proxy.core.identity import sha256_hex

    print(sha256_hex(args.secret))
    return 0


def cmd_hash_password(args: argparse.Namespace) -> int:
    """The Argon2id hash for a `users:` entry's `password_hash`; the password comes from stdin (one line), never
    argv, where other users of the machine and the shell history would see it."""
    from proxy.users.passwords import MAX_LENGTH, MIN_LENGTH, hash_password

    password = sys.stdin.readline().rstrip("\r\n")
    if not MIN_LENGTH <= len(password) <= MAX_LENGTH:
        print(f"hash-password: the password on stdin must be {MIN_LENGTH} to {MAX_LENGTH} characters",
              file=sys.stderr)
        return 2
    print(hash_password(password))
    return 0


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="gateway", description="OpenAI-compatible multi-provider AI gateway")
    sub = p.add_subparsers(dest="command")
    s = sub.add_parser("serve", help="run the gateway")
    s.add_argument("--config", default="gateway.yaml", help="path to gateway.yaml (default ./gateway.yaml)")
    s.add_argument("--host", default=None)
    s.add_argument("--port", type=int, default=None)
    s.add_argument("--reuse-port", action="store_true", help="SO_REUSEPORT, to run several processes")
    s.add_argument("--workers", type=int, default=1, help="worker processes sharing the port (default 1)")
    s.add_argument("--allow-dev-keys", action="store_true",
                   help="serve on a non-loopback address even with a documented default key")
    s.set_defaults(func=cmd_serve)
    mg = sub.add_parser("migrate", help="apply the ledger database's migrations and exit")
    mg.add_argument("--config", default="gateway.yaml", help="path to gateway.yaml (default ./gateway.yaml)")
    mg.set_defaults(func=cmd_migrate)
    mu = sub.add_parser("mock-upstream", help="run the standalone mock upstream")
    mu.add_argument("--host", default="127.0.0.1")
    mu.add_argument("--port", type=int, default=9000)
    mu.add_argument("--reply", choices=["echo", "lorem"], default="echo")
    mu.add_argument("--reply-tokens", type=int, default=20)
    mu.add_argument("--ttft", type=float, default=0.0, help="seconds before the first byte")
    mu.add_argument("--tokens-per-s", type=float, default=0.0, help="stream pacing (0 = unpaced)")
    mu.add_argument("--latency", type=float, default=0.0, help="extra seconds before a non-stream reply")
    mu.add_argument("--error-status", type=int, default=None)
    mu.add_argument("--error-rate", type=float, default=0.0)
    mu.add_argument("--cut-after", type=int, default=None, help="drop streams after N chunks")
    mu.add_argument("--api-key", default=None, help="require this key in each format's auth header")
    mu.set_defaults(func=cmd_mock_upstream)
    c = sub.add_parser("check-config", help="validate gateway.yaml and print what would be live")
    c.add_argument("--config", default="gateway.yaml")
    c.set_defaults(func=cmd_check_config)
    h = sub.add_parser("hash-key", help="print the key_sha256 of a secret for gateway.yaml")
    h.add_argument("secret")
    h.set_defaults(func=cmd_hash_key)
    hp = sub.add_parser("hash-password", help="read a password from stdin, print its Argon2id password_hash")
    hp.set_defaults(func=cmd_hash_password)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if not getattr(args, "func", None):
        args = parser().parse_args(["serve", *(argv or sys.argv[1:])])
    return int(args.func(args))


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
