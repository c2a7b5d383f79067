"""Benchmarks on the shared protocols: data loading, baselines and experiments."""
