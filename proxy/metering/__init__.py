"""Stage 7: metering: cost, metrics, the request's log line and its ledger row."""
