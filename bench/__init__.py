"""Benchmarks: `python -m bench.fetch` (see docs/benchmarks.md)."""
