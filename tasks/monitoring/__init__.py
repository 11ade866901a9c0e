"""Monitoring in the Prefect UI: run reports, diagrams, timelines and live progress."""
