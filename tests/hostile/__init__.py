"""Hostile-visitor tests: the real app process on loopback, attacked as a stranger would (issue 11)."""
