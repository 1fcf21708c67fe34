"""Upward reporting (contract section 9): the day's records per node, with a manifest, for the provincial platform."""
