"""Synthetic core-banking events for demos, tests and benchmarks."""
