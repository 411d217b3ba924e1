"""What the sync tests ask a running app: a session's sync status, a file as the agent's workspace
holds it, and its iterations there."""

from __future__ import annotations

from apphelpers import App, InvokeError


def status(app: App, sid: str) -> dict:
    return app.invoke("sync_status", sessionId=sid)


def upstream(app: App, sid: str, path: str) -> str | None:
    """The file's content in the workspace, or None when it has none."""
    try:
        return app.invoke("read_file", sessionId=sid, path=path)["content"]
    except InvokeError:
        return None


def history_of(app: App, sid: str, path: str) -> list[dict]:
    """The file's iterations in the workspace, oldest first ([] when it has none)."""
    try:
        return app.invoke("file_history", sessionId=sid, path=path)["iterations"]
    except InvokeError:
        return []
