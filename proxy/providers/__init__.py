"""Providers: one folder per `type:` (see registry.py), behind the seam in base.py, over transport.py."""

from proxy.providers.registry import build_provider

__all__ = ["build_provider"]
