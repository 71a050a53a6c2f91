"""What a cache backend stores and the interface both backends (memory, redis) implement."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import orjson

from proxy.providers.base import Completion, Usage

# Python object overhead per in-process entry (dict slot, Entry, Completion, Usage, key string),
# counted with the body so the byte bound holds for many small entries too
ENTRY_OVERHEAD = 400


@dataclass(slots=True)
class Entry:
    """A cached answer: the body bytes exactly as first sent, plus what metering and replay need."""

    completion: Completion  # `data` left None: a parsed copy would cost ~10x the bytes
    provider: str  # who answered, to price what a hit saved
    upstream_model: str
    created: float  # wall clock, for x-gateway-cache-age and max-age
    expires: float
    aliases: tuple[str, ...]  # for invalidation by alias

    def size(self, key: str) -> int:
        c = self.completion
        return (len(c.body) + len(key) + len(c.model) + len(self.provider) + len(self.upstream_model)
                + sum(len(a) for a in self.aliases) + ENTRY_OVERHEAD)


def encode(entry: Entry) -> bytes:
    """One line of JSON metadata, a newline, then the body bytes untouched (orjson never emits newlines)."""
    c, u = entry.completion, entry.completion.usage
    meta = {
        "u": (u.prompt_tokens, u.completion_tokens, u.cached_tokens, u.cache_write_tokens),
        "m": c.model, "f": c.finish_reason, "p": entry.provider, "um": entry.upstream_model,
        "t": entry.created, "x": entry.expires, "a": entry.aliases,
    }
    return orjson.dumps(meta) + b"\n" + c.body


def decode(raw: bytes) -> Entry:
    head, _, body = raw.partition(b"\n")
    meta = orjson.loads(head)
    completion = Completion(body=body, usage=Usage(*meta["u"]), model=meta["m"], finish_reason=meta["f"])
    return Entry(completion, meta["p"], meta["um"], meta["t"], meta["x"], tuple(meta["a"]))


class Backend(Protocol):
    name: str

    async def get(self, key: str) -> Entry | None:
        """The live entry, or None (unknown, expired, or the backend is unavailable)."""

    async def set(self, key: str, entry: Entry) -> None:
        """Store until `entry.expires`; failures are swallowed (and counted) by the backend."""

    async def delete(self, key: str) -> bool:
        """Drop one entry; True when it existed. Raises BackendUnavailable when the backend is down."""

    async def clear_alias(self, alias: str) -> int:
        """Drop every entry served for or asked as `alias`; returns how many."""

    async def clear(self) -> int:
        """Drop everything; returns how many entries."""

    async def close(self) -> None: ...


class BackendUnavailable(Exception):
    """An admin operation could not reach the backend (requests never see this: they degrade)."""
