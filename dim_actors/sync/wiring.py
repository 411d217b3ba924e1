"""What the composition root gives the sync actors: the watcher's records that outlive
its restarts. The journal and the materializer need none; the three share nothing and
tell each other by message."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from dim_actors.sync.echoes import EchoSet


@dataclass
class WatcherMemory:
    """So that a restarted watcher watches, and rescans, what its predecessor watched,
    and still knows the materializer's writes it was told of (and its echo counts)."""

    folders: dict[str, str] = field(default_factory=dict)  # sessionId -> local folder
    # sessionId -> path -> the stat signature and hash last seen (saves rehashing on a
    # rescan)
    stat_caches: dict[str, dict[str, Any]] = field(default_factory=dict)
    echoes: EchoSet = field(default_factory=EchoSet)
