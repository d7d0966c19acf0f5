"""Benchmarks of what the pipeline's clients ask of the broker (issue 13)."""
