"""Cache keys: a request, normalised, hashed to 32 hex characters.

The key covers everything that changes the answer: the kind of call, the alias asked for and the one
that serves it (after routing rules), a fingerprint of the serving alias's route, and every body field
except the few known not to change the answer. Unknown fields stay in the key: a field we do not know
may well change the answer, and a needless miss is cheaper than a wrong hit.

Hashing is on the hot path of every hit, so it is one `orjson.dumps(..., OPT_SORT_KEYS)` over the
parsed body (sorted keys at every depth: key order and whitespace of the client's JSON do not matter)
and one blake2b.
"""

from __future__ import annotations

import hashlib
from typing import Any

import orjson

from proxy.config import GatewayConfig

# fields that do not change what the model answers
EXCLUDED = frozenset({"model", "user", "stream", "stream_options", "metadata", "store"})
# numbers where 1 and 1.0 mean the same thing, but serialise differently
_FLOATS = frozenset({"temperature", "top_p", "frequency_penalty", "presence_penalty"})
KEY_CHARS = 32


def route_fingerprint(cfg: GatewayConfig, alias: str) -> str:
    """Short hash of the alias's route: editing its providers or models gives new keys (old ones age out)."""
    route = []
    for d in cfg.models[alias].route:
        p = cfg.providers[d.provider]
        route.append((d.provider, p.type, p.base_url or "", d.model))
    return hashlib.blake2b(orjson.dumps(route), digest_size=8).hexdigest()


def selection(body: dict[str, Any]) -> dict[str, Any]:
    """The body fields that go into the key; `null` counts as absent (the OpenAI API treats them alike)."""
    out: dict[str, Any] = {}
    for k, v in body.items():
        if v is None or k in EXCLUDED:
            continue
        if k in _FLOATS and type(v) is int:
            v = float(v)
        out[k] = v
    return out


def cache_key(kind: str, alias: str, served_alias: str, fingerprint: str, body: dict[str, Any]) -> str | None:
    """The entry's key, or None when the body cannot be hashed (e.g. an integer beyond 64 bits)."""
    try:
        raw = orjson.dumps((kind, alias, served_alias, fingerprint, selection(body)), option=orjson.OPT_SORT_KEYS)
    except orjson.JSONEncodeError:
        return None
    return hashlib.blake2b(raw, digest_size=KEY_CHARS // 2).hexdigest()


def is_key(value: str) -> bool:
    return len(value) == KEY_CHARS and all(c in "0123456789abcdef" for c in value)
