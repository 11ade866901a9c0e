"""Helpers for testing aiorch flows and for benchmarking.

As ``prefect.testing`` is for Prefect: a real Prefect server and PostgreSQL for a test
session, real workers running deployments, and fault injection (failing steps, a
misbehaving model endpoint).

Nothing in aiorch's runtime imports this package.
"""
