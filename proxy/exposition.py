"""Fast Prometheus text rendering of the gateway's own metrics (single-process mode).

prometheus-client's `generate_latest` builds a Sample object per series and escapes every label on
every scrape (~13 us a line: over a second for 50 aliases x 200 keys). Here each series' label
block is escaped once and cached, values are read straight from the metric children, and the
output is identical text format. Other collectors (process, GC, platform) still go through
prometheus-client, and multi-process mode keeps using its MultiProcessCollector.
"""

from __future__ import annotations

from typing import Any

from prometheus_client import REGISTRY, Counter, Gauge, Histogram, generate_latest
from prometheus_client.utils import floatToGoString

_label_cache: dict[tuple[int, tuple[str, ...]], str] = {}


def _escape(v: str) -> str:
    return v.replace("\\", r"\\").replace("\n", r"\n").replace('"', r"\"")


def _labels(metric: Any, values: tuple[str, ...]) -> str:
    """`{a="x",b="y"` without the closing brace (so `le` can follow), sorted like prometheus-client."""
    key = (id(metric), values)
    s = _label_cache.get(key)
    if s is None:
        pairs = sorted(zip(metric._labelnames, values, strict=True))
        s = "{" + ",".join(f'{n}="{_escape(v)}"' for n, v in pairs)
        if len(_label_cache) < 1_000_000:
            _label_cache[key] = s
    return s


def _children(metric: Any) -> list[tuple[tuple[str, ...], Any]]:
    if not metric._labelnames:
        return [((), metric)]
    with metric._lock:
        return list(metric._metrics.items())


def _block(labels: str, extra: str = "") -> str:
    if labels == "{" or not labels:
        return "{" + extra + "}" if extra else ""
    return labels + ("," + extra if extra else "") + "}"


def render_metric(metric: Any, out: list[str]) -> None:
    name = metric._name
    doc = metric._documentation.replace("\\", r"\\").replace("\n", r"\n")
    if isinstance(metric, Counter):
        out.append(f"# HELP {name}_total {doc}\n# TYPE {name}_total counter\n")
        for values, child in _children(metric):
            out.append(f"{name}_total{_block(_labels(metric, values))} {floatToGoString(child._value.get())}\n")
    elif isinstance(metric, Gauge):
        out.append(f"# HELP {name} {doc}\n# TYPE {name} gauge\n")
        for values, child in _children(metric):
            out.append(f"{name}{_block(_labels(metric, values))} {floatToGoString(child._value.get())}\n")
    elif isinstance(metric, Histogram):
        out.append(f"# HELP {name} {doc}\n# TYPE {name} histogram\n")
        bounds = [floatToGoString(b) for b in metric._upper_bounds]
        for values, child in _children(metric):
            labels = _labels(metric, values)
            acc = 0.0
            for le, bucket in zip(bounds, child._buckets, strict=True):
                acc += bucket.get()
                out.append(f'{name}_bucket{_block(labels, f"le={chr(34)}{le}{chr(34)}")} {floatToGoString(acc)}\n')
            out.append(f"{name}_count{_block(labels)} {floatToGoString(acc)}\n")
            out.append(f"{name}_sum{_block(labels)} {floatToGoString(child._sum.get())}\n")


class _OthersRegistry:
    """The default registry minus the gateway's own metrics, for prometheus-client to render."""

    def __init__(self, metrics: list[Any]) -> None:
        self._skip = {id(m) for m in metrics}

    def collect(self) -> Any:
        for collector in list(REGISTRY._collector_to_names):
            if id(collector) not in self._skip:
                yield from collector.collect()


def render(metrics: list[Any]) -> bytes:
    out: list[str] = []
    for metric in metrics:
        render_metric(metric, out)
    return "".join(out).encode() + generate_latest(_OthersRegistry(metrics))  # type: ignore[arg-type]
