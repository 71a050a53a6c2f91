"""Stage 4: routing: alias -> deployments, conditional routing rules."""
