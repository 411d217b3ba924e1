"""A small supervision tree of real pykka actors, for tests of one or a few actors at a time."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dim_actors.config.home import DimHome
from dim_actors.config.settings import Settings
from dim_actors.kernel.actor import ActorContext
from dim_actors.kernel.addresses import Addresses
from dim_actors.kernel.messagelog import MessageLogs
from dim_actors.kernel.supervisor import (
    ChildExited,
    ChildFailed,
    ChildSpec,
    Status,
    StopAll,
    Supervisor,
)


@dataclass
class Tree:
    sup: Any
    addresses: Addresses
    logs: MessageLogs
    home: DimHome
    gave_up: list[str] = field(default_factory=list)


@contextmanager
def supervised(
    root: Path,
    specs: list[ChildSpec],
    names: list[str] | None = None,
    period_s: float = 5.0,
    hang_timeout_s: float = 30.0,
    settings: Settings | None = None,
) -> Iterator[Tree]:
    """Start `specs` under a Supervisor (addresses for `names` too: actors that only hold what is
    sent to them), wait until it answers, and stop it all on the way out. Nothing checks health
    unless the test sends CheckHealth (the runtime's ticker sends it once a second)."""
    logs = MessageLogs(root / "logs")
    addresses = Addresses(names or [s.name for s in specs], logs)
    home, holder = DimHome(root / "home"), {}
    home.data_dir.mkdir(parents=True, exist_ok=True)
    settings = settings or Settings()
    gave_up: list[str] = []

    def ctx(name: str) -> ActorContext:
        return ActorContext(
            name,
            addresses,
            home,
            settings,
            on_failure=lambda n, e, g: holder["sup"].tell(ChildFailed(n, e, g)),
            on_exit=lambda n, g: holder["sup"].tell(ChildExited(n, g)),
        )

    sup = holder["sup"] = Supervisor.start(
        specs, addresses, ctx, 3, period_s, gave_up.append, hang_timeout_s
    )
    try:
        sup.ask(Status())
        yield Tree(sup, addresses, logs, home, gave_up)
    finally:
        sup.ask(StopAll())
        sup.stop()
        logs.close()


@contextmanager
def watching_folder(
    root: Path, folder: Path, watcher: type | None = None
) -> Iterator[Tree]:
    """A watcher (`watcher`: a subclass of Watcher) under a supervisor, beside a journal
    that only holds what it is told, told to watch `folder` as session s1."""
    from dim_actors.messages import WatchFolder
    from dim_actors.sync.watcher import Watcher
    from dim_actors.sync.wiring import WatcherMemory

    with supervised(
        root,
        [ChildSpec("watcher", watcher or Watcher, wiring=WatcherMemory())],
        ["watcher", "journal"],
        period_s=30.0,
    ) as tree:
        tree.addresses.send(
            "test", "watcher", WatchFolder(sessionId="s1", localDir=str(folder))
        )
        yield tree
