"""Intake: validating posted events, producing them to Kafka, reporting their status."""
