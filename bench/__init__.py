"""Benchmarks: run from the checkout with ``.venv/bin/python -m bench.<name>``."""
