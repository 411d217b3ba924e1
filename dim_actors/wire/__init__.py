"""What travels to and from a gateway: the Diminuendo protocol, the replication wire,
their limits.

The lowest layer: it depends on msgspec alone, so the dev gateway can share it without
the client.
"""
