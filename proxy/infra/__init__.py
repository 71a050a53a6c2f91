"""Infrastructure every layer may use: units, env vars, SSE framing, Redis, asyncio helpers."""
