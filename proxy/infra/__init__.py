"""Infrastructure the stages share: the one Redis client, SSE parsing and framing, asyncio helpers, the
bounded memo."""
