"""Venue adapters of the gatherer (one sub-package per venue)."""
