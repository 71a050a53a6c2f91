"""The built-in `mock` provider: in-process deterministic replies (shared with the mock upstream)."""
