"""Benchmarks behind `leve bench ...` (JSON out)."""
