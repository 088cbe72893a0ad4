"""Benchmarks of the cache read path; run them with ``python bench/run.py``."""
