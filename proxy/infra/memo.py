"""`Memo`: the bounded dict the stages keep derived values in (plans, windows, key names per client or key).

A memo is only a shortcut: when it is full it is emptied and refills with what is still in use, so a
caller spraying new keys (client IPs, key ids) costs memory up to `limit` entries and nothing more.
Reads are plain dict reads; only a miss pays the method call.
"""

from __future__ import annotations

from typing import TypeVar

K = TypeVar("K")
V = TypeVar("V")


class Memo(dict[K, V]):
    __slots__ = ("limit",)

    def __init__(self, limit: int) -> None:
        super().__init__()
        self.limit = limit

    def put(self, key: K, value: V) -> V:
        """Remember `value` for `key` (emptying a full memo first); returns `value`."""
        if len(self) >= self.limit:
            self.clear()
        self[key] = value
        return value
