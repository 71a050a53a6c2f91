"""Stage 2: admission: rate limits, budgets and their counters (in-process or Redis)."""
