"""Types every stage may read: the request context and OpenAI-format errors."""
