"""Prometheus metrics, their fast exposition, structured logs."""
