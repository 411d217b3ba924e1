"""The watcher actor: local edits in a sync folder become journal records (watchdog)."""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path
from typing import Any

from watchdog.events import FileSystemEvent, FileSystemEventHandler
from watchdog.observers import Observer

from dim_actors.messages import FsEvent, JournalRecord, Msg, UnwatchFolder, WatchFolder
from dim_actors.supervisor.actor import DimActor
from dim_actors.sync.echoes import EchoSet
from dim_actors.sync.ignore import is_ignored

log = logging.getLogger(__name__)


def file_hash(path: Path) -> str | None:
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except (FileNotFoundError, IsADirectoryError, PermissionError):
        return None


class _Forward(FileSystemEventHandler):
    """Runs on watchdog's thread: only posts to the actor's mailbox, never touches its state."""

    def __init__(self, send, session_id: str):
        self.send = send
        self.session_id = session_id

    def on_any_event(self, event: FileSystemEvent) -> None:
        if event.is_directory or event.event_type in ("opened", "closed_no_write"):
            return
        paths = [event.src_path]
        if getattr(event, "dest_path", ""):
            paths.append(event.dest_path)
        for p in paths:
            self.send(FsEvent(sessionId=self.session_id, path=p))


class Watcher(DimActor):
    def on_start(self) -> None:
        super().on_start()
        self.echoes: EchoSet = self.ctx.extra.setdefault("echoes", EchoSet())
        self.observer = Observer()
        self.observer.start()
        self.folders: dict[str, tuple[Path, Any]] = {}
        self.changes = 0

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "folders": len(self.folders), "changes": self.changes}

    def handle(self, sender: str, body: Msg) -> None:
        if isinstance(body, FsEvent):
            self.on_fs_event(body.sessionId, body.path)
        elif isinstance(body, WatchFolder):
            root = Path(body.localDir).resolve()
            watch = self.observer.schedule(_Forward(lambda m: self.ctx.send(self.ctx.name, m), body.sessionId), str(root), recursive=True)
            self.folders[body.sessionId] = (root, watch)
        elif isinstance(body, UnwatchFolder):
            entry = self.folders.pop(body.sessionId, None)
            if entry is not None:
                self.observer.unschedule(entry[1])
        else:
            raise TypeError(f"watcher: unexpected message {type(body).__name__}")

    def on_fs_event(self, session_id: str, path: str) -> None:
        entry = self.folders.get(session_id)
        if entry is None:
            return
        root = entry[0]
        p = Path(path)
        try:
            rel = p.relative_to(root).as_posix()
        except ValueError:
            return
        if is_ignored(rel):
            return
        digest = file_hash(p)
        deleted = not p.exists()
        if self.echoes.consume(rel, digest):
            return
        self.changes += 1
        self.ctx.send("journal", JournalRecord(sessionId=session_id, origin="local", path=rel,
                                               contentHash=digest, isDeletion=deleted))

    def on_stop(self) -> None:
        self.observer.stop()
        self.observer.join(timeout=5)
