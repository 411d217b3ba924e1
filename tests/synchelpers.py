"""What the sync tests do with a running app: a coding-agent session, its sync started, its sync
status, a file as the agent's workspace holds it, and that file's iterations there; a big folder
to sync."""

from __future__ import annotations

from pathlib import Path

from apphelpers import App, InvokeError, wait_until


def new_session(app: App, script: str | None = None) -> str:
    """A joined coding-agent session; with `script`, its first turn is sent."""
    sid = app.invoke("create_session", agentType="coding-agent")["session"]["id"]
    app.invoke("join_session", sessionId=sid)
    if script:
        app.invoke("run_turn", sessionId=sid, text=script)
    return sid


def start(app: App, sid: str, folder: Path, **args) -> dict:
    """start_sync, then the session's status once its link to the gateway is up and its
    folder watched (a new sync's first files are written before the watch starts)."""
    app.invoke("start_sync", sessionId=sid, localDir=str(folder), **args)
    return wait_until(
        lambda: (
            (st := status(app, sid))["link"] == "connected"
            and (st["watching"] or st["state"] != "active")
            and st
        ),
        60,
        what="the sync link and the folder's watch",
    )


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


def make_tree(root: Path, files: int) -> None:
    """`files` small files under `root`, 100 to a folder, as a source tree holds them."""
    for i in range(files):
        d = root / f"pkg{i // 1000}" / f"mod{(i // 100) % 10}"
        if i % 100 == 0:
            d.mkdir(parents=True, exist_ok=True)
        (d / f"f{i:05}.txt").write_text(f"file {i}\n")


def run_script(app: App, sid: str, script: str) -> None:
    """Run the agent's script, once the session's previous turn is over."""

    def go():
        try:
            return app.invoke("run_turn", sessionId=sid, text=script) or True
        except InvokeError as e:
            if any(w in str(e).lower() for w in ("progress", "running", "busy")):
                return None
            raise

    wait_until(go, 60, what="the turn accepted")


def failed(app: App, sid: str) -> dict[str, dict]:
    """The session's files that could not be synced, by path."""
    return {f["path"]: f for f in status(app, sid).get("failed", [])}
