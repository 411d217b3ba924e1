"""The control socket: dimctl and the supervisor process, one JSON object a line."""

from __future__ import annotations

from typing import Any, Literal

import msgspec


class ControlRequest(msgspec.Struct, omit_defaults=True):
    cmd: Literal["status", "restart", "stop", "logs", "crash", "show"]
    actor: str | None = None
    types: list[str] = []
    since: float | None = None
    limit: int | None = None
    follow: bool = False
    hangSeconds: float | None = None
    sessionId: str | None = None  # show: the session to open
    newWindow: bool = False  # show: in a window of its own (sessionId required)


class ControlReply(msgspec.Struct, omit_defaults=True):
    ok: bool
    result: Any = None
    error: str | None = None
