"""Console users: password hashing (passwords.py), sign-in sessions (sessions.py) and the service that keeps
gateway.yaml's `users:` in the database and resolves a browser's session (service.py). Storage is the
ledger's (users, console_sessions); limits and budgets of users are admission's."""
