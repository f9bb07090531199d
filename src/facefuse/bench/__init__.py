"""Benchmarks: they measure and write figures to files; tests never assert timings."""
