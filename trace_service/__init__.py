"""trace-service: the event-driven backend of a city meat and vegetable traceability platform."""

__version__ = "0.1.0"
