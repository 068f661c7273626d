"""Benchmarks run by ``make bench``; each prints its figures and ratios against baselines
measured in the same run (never timed assertions in the test suite)."""
