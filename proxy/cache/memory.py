"""In-process LRU cache bounded by bytes (the default backend).

A hit is one dict get, an expiry check and a `move_to_end`; an insert evicts least-recently-used
entries until the new one fits, so the byte count never exceeds `max_bytes`. Expired entries are
dropped when touched or when LRU order reaches them.
"""

from __future__ import annotations

import time
from collections import OrderedDict

from proxy.cache.backend import Entry
from proxy.observability import metrics as m


class MemoryBackend:
    name = "memory"

    def __init__(self, max_bytes: int, recorder: m.Recorder | None = None) -> None:
        self.max_bytes = max_bytes
        self.bytes = 0
        self.evictions = 0
        self._data: OrderedDict[str, tuple[Entry, int]] = OrderedDict()
        self._metrics = recorder is not None and recorder.enabled

    def __len__(self) -> int:
        return len(self._data)

    async def get(self, key: str) -> Entry | None:
        item = self._data.get(key)
        if item is None:
            return None
        entry = item[0]
        if entry.expires <= time.time():
            self._drop(key)
            return None
        self._data.move_to_end(key)
        return entry

    async def set(self, key: str, entry: Entry) -> None:
        size = entry.size(key)
        if size > self.max_bytes:
            return  # would evict everything and still not fit
        if key in self._data:
            self._drop(key)
        evicted = 0
        while self.bytes + size > self.max_bytes:
            _, (_, old_size) = self._data.popitem(last=False)
            self.bytes -= old_size
            evicted += 1
        self._data[key] = (entry, size)
        self.bytes += size
        if evicted:
            self.evictions += evicted
        if self._metrics:
            if evicted:
                m.CACHE_EVICTIONS.inc(evicted)
            m.CACHE_BYTES.set(self.bytes)

    async def delete(self, key: str) -> bool:
        return self._drop(key)

    async def clear_alias(self, alias: str) -> int:
        doomed = [k for k, (e, _) in self._data.items() if alias in e.aliases]
        for k in doomed:
            self._drop(k)
        return len(doomed)

    async def clear(self) -> int:
        n = len(self._data)
        self._data.clear()
        self.bytes = 0
        if self._metrics:
            m.CACHE_BYTES.set(0)
        return n

    async def close(self) -> None:
        await self.clear()

    def _drop(self, key: str) -> bool:
        item = self._data.pop(key, None)
        if item is None:
            return False
        self.bytes -= item[1]
        if self._metrics:
            m.CACHE_BYTES.set(self.bytes)
        return True
