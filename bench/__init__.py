"""Benchmarks that print figures with a baseline measured in the same run."""
