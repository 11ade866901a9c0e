"""Prefect flows shipped with aiorch: the demo and the reference workflows."""
