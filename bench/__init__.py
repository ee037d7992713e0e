"""Benchmarks of vsvqdsr (``python -m bench.speed``)."""
