"""Dedup benchmark: one Faust worker draining pre-filled raw topics against a plain batch consumer."""
