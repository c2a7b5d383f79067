"""Data in: checks, gene alignment, preprocessing, minibatches, Harmony and the demo data."""
