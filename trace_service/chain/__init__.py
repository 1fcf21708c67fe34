"""The trace graph: projecting events into lots and edges, lineage, recall and the consumer's view."""
