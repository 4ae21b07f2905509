"""Noise schedules, samplers and the two-stage pipeline the tests and benchmarks run."""
