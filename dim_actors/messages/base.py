"""The base of every inter-actor message, and the actors' names."""

from __future__ import annotations

import msgspec

ACTOR_NAMES = ("journal", "materializer", "watcher", "router", "connection", "uibridge")


class Msg(msgspec.Struct, tag_field="kind", omit_defaults=True):
    """Base of every inter-actor message body."""
