"""Benchmarks: every `bench/<name>_bench.py` module has a `main()`; `python -m bench` runs them all."""
