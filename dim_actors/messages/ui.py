"""Between the UI bridge and the router."""

from __future__ import annotations

from typing import Any

import msgspec

from dim_actors.messages.base import Msg


class Invoke(Msg, tag="invoke"):
    reqId: int
    command: str
    args: dict[str, Any] = {}


class InvokeResult(Msg, tag="invoke_result"):
    reqId: int
    ok: bool
    result: Any = None
    error: dict[str, Any] | None = None


class UiEvent(Msg, tag="ui_event"):
    """One frame for the page: `payload` is raw JSON (a gateway event as sent, or our
    own object)."""

    event: str
    payload: msgspec.Raw
