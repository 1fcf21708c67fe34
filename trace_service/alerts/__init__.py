"""Alerts: integrity and market findings, their lifecycle, the outbox to Kafka and the live stream."""
