"""Sharing (contract section 9): the ordered stream of shared items, department scopes, the pull feed,
exports and the audit of who read what."""
