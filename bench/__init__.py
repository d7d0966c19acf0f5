"""Benchmarks: one package per stage, each printing a final `RESULT {json}` line."""
