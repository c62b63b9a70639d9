"""Benchmarks that run Mirrorflow and a real peer on the same input and print the ratio."""
