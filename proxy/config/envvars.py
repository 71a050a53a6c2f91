"""`${VAR}` and `${VAR:-default}` interpolation of gateway.yaml values."""

from __future__ import annotations

import re
from typing import Any

_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


def interpolate(node: Any, env: dict[str, str], missing: set[str]) -> Any:
    """Replace ${VAR} / ${VAR:-default} in every string; collect unset variables without defaults."""
    if isinstance(node, dict):
        return {k: interpolate(v, env, missing) for k, v in node.items()}
    if isinstance(node, list):
        return [interpolate(v, env, missing) for v in node]
    if not isinstance(node, str):
        return node

    def sub(m: re.Match[str]) -> str:
        name, default = m.group(1), m.group(2)
        value = env.get(name)
        if value:
            return value
        if default is not None:
            return default
        missing.add(name)
        return ""

    out = _VAR.sub(sub, node)
    if out == "" and _VAR.fullmatch(node):
        return None  # an unset ${VAR} standing alone means "not given"
    return out
