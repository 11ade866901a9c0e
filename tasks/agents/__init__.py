"""Agent calls: FastAgent agents configured by blocks, run as Prefect tasks."""
