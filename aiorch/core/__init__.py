"""The layer everything else stands on.

Settings, the error taxonomy, secret redaction, helper processes, event names, markdown
and the few touches of Prefect internals.

Nothing here imports another part of aiorch.
"""
