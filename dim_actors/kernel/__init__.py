"""The actor kernel: the actor base and its context, addresses, the supervisor, message
logs.

It knows messages and configuration, never a concrete actor: the app composes those.
"""
