"""Observability: logs (telemetry), traces, metrics, health and the garbage-collector tuning."""
