"""Setting up where flows run, never inside a task.

Environments (pools, variables, blocks), images built without a registry, and
automations defined as code.

Used by the ``aiorch`` command and ``deployments/``; imports the layers below it
(blocks, tasks, core), never the flows.
"""
