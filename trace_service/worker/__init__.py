"""The projector: consumes ``trace.events.v1`` and applies each batch in one Postgres transaction."""
