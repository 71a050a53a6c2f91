"""Fast Prometheus text rendering of the gateway's own metrics (single-process mode).

prometheus-client's `generate_latest` builds a Sample object per series, escapes every label and
formats every value on every scrape: ~1.5 s for 50 aliases x 200 keys (50,000 series), where
issue #8 allows 50 ms. Here each metric keeps its rendered lines between scrapes: a series'
`name{labels} ` prefix is built once, its value text is redone only when the value changed, and
values are read straight from the children's cells, so a scrape is mostly C-level list passes
(those 50,000 series: ~15 ms; ~55 ms if every one changed since the last scrape). The output is
byte-for-byte `generate_latest(registry)`: other collectors (process, GC, platform) still go
through prometheus-client, and multi-process mode keeps using its MultiProcessCollector.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Iterable
from itertools import accumulate, compress, repeat
from math import isfinite
from operator import attrgetter, is_not, le, ne
from types import SimpleNamespace
from typing import Any

import prometheus_client.metrics as _pm
import prometheus_client.values as _pv
from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.utils import INF, floatToGoString

_TYPES: dict[type, tuple[str, str]] = {Counter: ("counter", "_total"), Gauge: ("gauge", ""),
                                       Histogram: ("histogram", "")}
_CELL = attrgetter("_value")  # a child's value cell
_UNSET = object()  # the value of a series not rendered yet: it differs from any value
_lock = threading.Lock()  # renders update the cached lines in place
_index: list[int] = []  # 0, 1, 2, ...: for compress() (iterating a range would make each int anew)


class _Series:
    """A metric as of the last scrape: its children and, for each output line, the value cell, the
    value read, the line's prefix (`\\nname{labels} `) and the whole line (prefix and value text)."""

    __slots__ = ("cells", "children", "lines", "prefixes", "values")

    def __init__(self, children: list[Any], cells: list[Any], values: list[Any], prefixes: list[bytes]) -> None:
        self.children = children
        self.cells = cells
        self.values = values
        self.prefixes = prefixes
        self.lines = prefixes.copy()


_series: weakref.WeakKeyDictionary[Any, _Series] = weakref.WeakKeyDictionary()
_NONE = _Series([], [], [], [])


def _escape(v: str) -> str:
    return v.replace("\\", r"\\").replace("\n", r"\n").replace('"', r"\"")


def _labels(names: tuple[str, ...], values: tuple[str, ...], *extra: tuple[str, str]) -> str:
    pairs = sorted([*zip(names, values, strict=True), *extra])  # prometheus-client sorts `le` in too
    return "{" + ",".join(f'{n}="{_escape(v)}"' for n, v in pairs) + "}" if pairs else ""


def _prefixes(metric: Any, name: str, children: list[Any]) -> list[str]:
    names = metric._labelnames
    if type(metric) is not Histogram:
        return [f"\n{name}{_labels(names, c._labelvalues)} " for c in children]
    bounds = [("le", floatToGoString(b)) for b in metric._upper_bounds]
    out = []
    for c in children:
        out += [f"\n{name}_bucket{_labels(names, c._labelvalues, le)} " for le in bounds]
        out.append(f"\n{name}_count{_labels(names, c._labelvalues)} ")
        if metric._upper_bounds[0] >= 0:
            out.append(f"\n{name}_sum{_labels(names, c._labelvalues)} ")
    return out


def _cells(metric: Any, children: list[Any]) -> list[Any]:
    if type(metric) is not Histogram:
        return list(map(_CELL, children))
    return [cell for c in children for cell in (*c._buckets, c._sum)]


def _series_of(metric: Any, name: str, children: list[Any]) -> _Series:
    """The cached series while the children are the same objects (list == checks identity first)."""
    old = _series.get(metric)
    if old is not None and old.children == children:
        return old
    if old is None or children[: len(old.children)] != old.children:  # a child was removed: start over
        old = _NONE
    new = children[len(old.children):]  # usually the only change: new series
    prefixes = [p.encode() for p in _prefixes(metric, name, new)]
    series = _Series(children, old.cells + _cells(metric, new), old.values + [_UNSET] * len(prefixes),
                     old.prefixes + prefixes)
    series.lines[: len(old.lines)] = old.lines
    _series[metric] = series
    return series


def _values(metric: Any, series: _Series) -> list[Any]:
    """Each line's value. Single-process cells (MutexValue, metrics.LoopValue) keep a plain float in
    `._value`: reading one attribute is atomic under the GIL, so no lock is taken per value."""
    cells = series.cells
    vc = _pv.ValueClass
    single = isinstance(vc, type) and issubclass(vc, _pv.MutexValue)
    raw = [c._value for c in cells] if single else [c.get() for c in cells]
    if type(metric) is Histogram:
        n = len(metric._upper_bounds) + 1  # bucket cells and the _sum cell of each child
        with_sum = metric._upper_bounds[0] >= 0
        out: list[float] = []
        for i in range(0, len(raw), n):
            buckets = list(accumulate(raw[i:i + n - 1], initial=0.0))[1:]  # acc = 0.0; acc += b, as upstream
            out += buckets
            out.append(buckets[-1])
            if with_sum:
                out.append(raw[i + n - 1])
        return out
    if type(metric) is Gauge and any("_child_samples" in vars(c) for c in series.children):  # set_function()
        return [c._child_samples()[0].value for c in series.children]
    return raw


def _go(v: float) -> str:
    """floatToGoString(v): repr() for the ordinary floats, where the two agree."""
    return repr(v) if type(v) is float and -INF < v < 1e6 else floatToGoString(v)


def _texts(values: list[Any]) -> list[str]:
    """floatToGoString of each value, in bulk: repr() when all are finite floats (floatToGoString
    differs for ints, infinities, NaN, and the exponent form of 1e6 <= v < 1e16)."""
    if set(map(type, values)) != {float} or not isfinite(sum(values)):
        return [_go(v) for v in values]
    texts = list(map(repr, values))
    for i in compress(_index, map(le, repeat(1e6), values)):
        texts[i] = floatToGoString(values[i])
    return texts


def _render_metric(metric: Any, out: list[bytes]) -> None:
    """Append the metric's text; under `_lock`."""
    typ, suffix = _TYPES[type(metric)]
    name = metric._name + suffix
    doc = metric._documentation.replace("\\", r"\\").replace("\n", r"\n")
    if metric._labelnames:
        with metric._lock:
            children = list(metric._metrics.values())
    else:
        children = [metric]
    series = _series_of(metric, name, children)
    values, prefixes, lines = _values(metric, series), series.prefixes, series.lines
    # a cell's float is replaced when the value changes (the old one stays alive in series.values, so
    # its id is not reused): identity tells which texts to redo. Histogram lines are fresh sums each
    # time, compared by value (never -0.0, the one value equal to another with a different text).
    differs = ne if type(metric) is Histogram else is_not
    if len(_index) < len(values):
        _index.extend(range(len(_index), len(values)))
    changed = list(compress(_index, map(differs, values, series.values)))
    for i, text in zip(changed, _texts(list(map(values.__getitem__, changed))), strict=True):
        lines[i] = prefixes[i] + text.encode()
    series.values = values
    out.append(f"# HELP {name} {doc}\n# TYPE {name} {typ}".encode())  # each line's prefix starts with "\n"
    out += lines
    out.append(b"\n")


class _Collectors:
    """A few collectors for prometheus-client to render, as if they were a registry."""

    def __init__(self, collectors: list[Any]) -> None:
        self.collectors = collectors

    def collect(self) -> Iterable[Any]:
        for collector in self.collectors:
            yield from collector.collect()


def render(metrics: Iterable[Any], registry: CollectorRegistry = REGISTRY) -> bytes:
    """`generate_latest(registry)`, with the registered ones of `metrics` rendered here."""
    fast = {id(m) for m in metrics if type(m) in _TYPES and not _pm._use_created}
    with registry._lock:
        collectors = list(registry._collector_to_names)
        target_info = registry._target_info_metric() if registry._target_info else None
    out: list[bytes] = []
    others: list[Any] = [SimpleNamespace(collect=lambda: [target_info])] if target_info else []
    with _lock:
        for collector in collectors:
            if id(collector) not in fast:
                others.append(collector)
                continue
            if others:
                out.append(generate_latest(_Collectors(others)))  # type: ignore[arg-type]
                others = []
            _render_metric(collector, out)
    if others:
        out.append(generate_latest(_Collectors(others)))  # type: ignore[arg-type]
    return b"".join(out)
