"""The one exception a request handler raises to answer its request with an ``error``
event."""

from __future__ import annotations


class GatewayError(Exception):
    """Refuse a request: ``code`` and ``message`` go to the requesting connection only."""

    def __init__(self, code: str, message: str, retry_after_ms: int | None = None):
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.retry_after_ms = retry_after_ms


def session_not_found() -> GatewayError:
    # The reference's own example error, word for word.
    return GatewayError("SessionNotFound", "Session not found")
