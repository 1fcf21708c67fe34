"""Prometheus metrics of intake, served by ``GET /metrics``."""

from __future__ import annotations

from prometheus_client import Counter, Histogram

EVENTS_ACCEPTED = Counter("trace_events_accepted_total", "Events acknowledged by the broker and answered 202")
REQUESTS_REFUSED = Counter("trace_event_requests_refused_total", "POST /v1/events refused, by error code", ["code"])
ACCEPT_SECONDS = Histogram(
    "trace_event_accept_seconds",
    "Time to validate and produce one POST /v1/events (until the broker acked)",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
