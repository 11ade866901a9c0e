"""Messages between agents and people: one versioned envelope, and its A2A mapping.

The envelope (:class:`~aiorch.tasks.messaging.envelope.Envelope`) is what every transport
carries; :mod:`aiorch.tasks.messaging.a2a` converts it to and from an A2A ``Message``
losslessly. docs/messaging.md publishes its JSON Schema.
"""
