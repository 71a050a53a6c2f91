"""Stage 1: authentication (who is calling) and authorisation (may they use this alias)."""
