"""The public contract as code: codes, the event envelope and the event catalogue.

Nothing in here imports a framework or touches I/O; the API, the worker and the schema generator all
build on these models.
"""
