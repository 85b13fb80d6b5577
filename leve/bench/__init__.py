"""Benchmarks behind ``leve bench ...``; each module returns a JSON-ready report."""
