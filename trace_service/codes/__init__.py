"""Lot codes the service issues to operators (contract section 1, ``POST /v1/codes``)."""
