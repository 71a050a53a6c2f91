"""Per-request cache control from request headers.

  Cache-Control: no-cache      skip the lookup, call upstream, refresh the entry
  Cache-Control: no-store      do not write the answer
  Cache-Control: max-age=N     only accept an entry younger than N seconds
  x-gateway-cache-ttl: N       keep the written entry N seconds (at most the configured TTL; 30s/1h work too)

A value we cannot read is ignored and named in `x-gateway-warning`; it never fails the request.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from proxy.core.units import parse_duration

# directives that are valid HTTP but mean nothing for this cache: accepted silently
_IGNORED = frozenset({
    "public", "private", "no-transform", "must-revalidate", "proxy-revalidate", "only-if-cached",
    "s-maxage", "max-stale", "min-fresh", "stale-while-revalidate", "stale-if-error", "immutable",
    "must-understand",
})


@dataclass(slots=True)
class Controls:
    no_cache: bool = False
    no_store: bool = False
    max_age: float | None = None
    ttl: float | None = None
    warnings: list[str] = field(default_factory=list)


NONE = Controls()  # shared by every request without cache headers (the common case: no allocation)


def parse(headers: Mapping[str, str] | None) -> Controls:
    if not headers:
        return NONE
    cc = headers.get("Cache-Control")
    ttl = headers.get("x-gateway-cache-ttl")
    if cc is None and ttl is None:
        return NONE
    out = Controls()
    if cc is not None:
        _cache_control(cc, out)
    if ttl is not None:
        try:
            out.ttl = parse_duration(ttl.strip())
        except ValueError:
            out.warnings.append(f"ignored x-gateway-cache-ttl {_quote(ttl)}: expected seconds")
    return out


def _cache_control(value: str, out: Controls) -> None:
    for raw in value.split(","):
        token = raw.strip()
        if not token:
            continue
        name, eq, arg = token.partition("=")
        name = name.strip().lower()
        if name == "no-cache" and not eq:
            out.no_cache = True
        elif name == "no-store" and not eq:
            out.no_store = True
        elif name == "max-age" and eq:
            arg = arg.strip().strip('"')
            if arg.isdigit():
                out.max_age = float(arg)
            else:
                out.warnings.append(f"ignored Cache-Control {_quote(token)}: max-age needs whole seconds")
        elif name in _IGNORED:
            continue
        else:
            out.warnings.append(f"ignored Cache-Control {_quote(token)}")


def _quote(value: str) -> str:
    # header values are echoed back: keep them short and printable
    clean = "".join(c if 32 <= ord(c) < 127 else "?" for c in value[:60])
    return f"'{clean}'"
