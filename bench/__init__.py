"""Benchmarks for ``make bench``: ratios measured side by side in one run.

Run with ``python -m bench``. The machines are shared and noisy, so every number
that matters is a ratio to a baseline measured in the same rounds, never an
absolute threshold.
"""
