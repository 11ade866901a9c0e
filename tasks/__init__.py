"""Prefect tasks and the runtime behind them: settings, platform survey, runners, agents."""
