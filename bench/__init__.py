"""Benchmarks for attn (not installed; run from the repository: `python -m bench`)."""
