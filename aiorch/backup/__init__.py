"""Backups and restores of the Prefect database, aiorch's stores and the stored results."""
