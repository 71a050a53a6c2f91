"""The HTTP surface: the OpenAI API, batch, health and the admin API."""
