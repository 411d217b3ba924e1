"""The materializer actor: writes upstream files into the sync folder, atomically."""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
from pathlib import Path
from typing import Any

from dim_actors.messages import JournalRecord, MaterializeFile, Msg
from dim_actors.supervisor.actor import DimActor
from dim_actors.sync.echoes import EchoSet
from dim_actors.sync.paths import UnsafePath, confined

log = logging.getLogger(__name__)


class Materializer(DimActor):
    def on_start(self) -> None:
        super().on_start()
        self.echoes: EchoSet = self.ctx.extra.setdefault("echoes", EchoSet())
        self.written = 0
        self.rejected = 0

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "written": self.written, "rejected": self.rejected}

    def handle(self, sender: str, body: Msg) -> None:
        if isinstance(body, MaterializeFile):
            self.materialize(body)
        else:
            raise TypeError(f"materializer: unexpected message {type(body).__name__}")

    def materialize(self, m: MaterializeFile) -> None:
        root = Path(m.localDir)
        try:
            target = confined(root, m.path)
        except UnsafePath as e:
            self.rejected += 1
            log.warning("refused upstream write for session %s: %s", m.sessionId, e)
            return
        if m.isDeletion:
            self.echoes.add(m.path, None)
            target.unlink(missing_ok=True)
            digest = None
        else:
            digest = hashlib.sha256(m.content).hexdigest()
            self.echoes.add(m.path, digest)
            target.parent.mkdir(parents=True, exist_ok=True)
            # Temp file in the same folder, then rename: an editor never sees half a file.
            fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".dim-", suffix=".tmp")
            try:
                with os.fdopen(fd, "wb") as f:
                    f.write(m.content)
                if m.permissions is not None:
                    os.chmod(tmp, m.permissions & 0o777)
                os.replace(tmp, target)
            except BaseException:
                os.unlink(tmp)
                raise
        self.written += 1
        self.ctx.send("journal", JournalRecord(sessionId=m.sessionId, origin="upstream", path=m.path,
                                               contentHash=digest, isDeletion=m.isDeletion))
