"""Resilience: the error report, retry policies, circuit breakers, fault injection."""
