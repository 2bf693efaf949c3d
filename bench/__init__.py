"""Benchmarks of srs: `python -m bench` (see __main__), the load generator, the media ladder."""
