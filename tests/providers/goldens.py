"""Helpers for the translator golden tests."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"


def golden(provider: str, name: str) -> Any:
    return json.loads((FIXTURES / provider / name).read_text())


def without(d: dict[str, Any], *keys: str) -> dict[str, Any]:
    """A response minus its non-deterministic fields (id, created)."""
    return {k: v for k, v in d.items() if k not in keys}
