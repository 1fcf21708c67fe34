"""The HTTP API: the application factory, the error mapping, health and metrics."""
