"""Webhooks: subscriptions, Standard Webhooks signing, durable at-least-once delivery of gateway events.

config.py (gateway.yaml section, event types), signing.py, targets.py (safe destinations), store.py
(subscriptions and deliveries in the ledger database), events.py (producer: bounded queue -> batched
durable insert), dispatcher.py (claims due deliveries, attempts, retries), service.py (the lifecycle).
Kept import-light: proxy/config.py imports config.py from here.
"""
