"""Benchmarks of srs: `python -m srs.bench` (see __main__), the load generator, the media ladder."""
