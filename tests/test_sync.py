"""Local sync end to end: a real dim-desktop, a real dev gateway, a real folder, real
editors and tools.

One app and one in-process dev gateway serve the module (each test has its own session
and folder); the gateway object lets a test write as the agent at a precise moment, hold
write-backs, or push a notification the gateway would never send.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import sqlite3
import subprocess
from pathlib import Path

import pytest
from apphelpers import (
    App,
    InvokeError,
    free_port,
    userns_watch_limit_works,
    wait_until,
    watch_limited,
    write_settings,
)
from synchelpers import history_of, new_session, start, status, upstream

from dim_actors.devgateway import BackgroundGateway
from dim_actors.wire import replication as wire

FAULTS = (
    "handler_error=crashme,overflow=overflowme,unwatched=unwatchedme,echo_miss=leakme"
)


@pytest.fixture(scope="module")
def sapp(gw, tmp_path_factory):
    home = tmp_path_factory.mktemp("dim-home")
    a = App(
        home,
        ["--gateway", gw.url, "--watcher-faults", FAULTS],
        module="faulty_app",
    )
    a.wait_connected()
    yield a
    a.stop()


@pytest.fixture
def folder(tmp_path) -> Path:
    return tmp_path / "sync"


def ensure_tool(name: str) -> str:
    path = shutil.which(name)
    assert path, f"{name} is not installed (bin/ensure-test-tools installs it)"
    return path


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def agent_write(gw: BackgroundGateway, sid: str, path: str, data: bytes) -> None:
    gw.call(lambda g: g.sessions[sid].workspace.write(path, data))


def iterations(app: App, sid: str, path: str) -> int:
    return len(history_of(app, sid, path))


def upstream_files(app: App, sid: str) -> dict[str, int]:
    try:
        files = app.invoke("list_files", sessionId=sid)["files"]
    except InvokeError:
        return {}
    return {f["path"]: f["iteration"] for f in files if f["type"] == "file"}


_barriers = [0]


def barrier(app: App, sid: str, folder: Path) -> None:
    """Everything the watcher saw before this point has been handled: a marker file
    written now reaches upstream after every earlier event's quiet period has passed."""
    _barriers[0] += 1
    name = f"zz-barrier-{_barriers[0]}"
    (folder / name).write_text(name)
    wait_until(
        lambda: upstream(app, sid, name) == name, 60, what="the barrier file upstream"
    )
    wait_until(
        lambda: status(app, sid)["pendingWrites"] == 0, 60, what="no pending writes"
    )


def test_agent_writes_land_and_local_edits_go_up_once(sapp, gw, folder):
    sid = new_session(sapp)
    sapp.invoke(
        "run_turn",
        sessionId=sid,
        text="/write README.md hello\n/write src/app.py print(1)\n/write old.txt x",
    )
    wait_until(
        lambda: upstream(sapp, sid, "old.txt") == "x", 60, what="the agent's files"
    )
    start(sapp, sid, folder)
    wait_until(
        lambda: (folder / "src/app.py").is_file() and (folder / "old.txt").is_file(),
        60,
        what="materialized",
    )
    # the watcher saw the materializer's three writes, and knew them for its own
    wait_until(
        lambda: status(sapp, sid)["stats"]["echoesSuppressed"] >= 3,
        60,
        what="the echoes suppressed",
    )
    assert (folder / "README.md").read_text() == "hello"
    assert (folder / "src/app.py").stat().st_mode & 0o777 == 0o644

    big = os.urandom(300_000)
    agent_write(gw, sid, "data/big.bin", big)
    sapp.invoke(
        "run_turn",
        sessionId=sid,
        text="/rename old.txt new.txt\n/write README.md hello again",
    )
    wait_until(
        lambda: (
            (folder / "data/big.bin").is_file()
            and (folder / "data/big.bin").read_bytes() == big
        ),
        10,
        what="the big file",
    )
    wait_until(
        lambda: (folder / "new.txt").is_file() and not (folder / "old.txt").exists(),
        60,
        what="the rename",
    )
    wait_until(
        lambda: (folder / "README.md").read_text() == "hello again",
        60,
        what="the agent's edit",
    )

    (folder / "src/app.py").write_text("print(2)\n")
    os.chmod(folder / "src/app.py", 0o755)
    wait_until(
        lambda: upstream(sapp, sid, "src/app.py") == "print(2)\n",
        60,
        what="the local edit upstream",
    )
    (folder / "new.txt").unlink()
    wait_until(
        lambda: "new.txt" not in upstream_files(sapp, sid),
        60,
        what="the local deletion upstream",
    )
    barrier(sapp, sid, folder)
    st = status(sapp, sid)
    assert (
        iterations(sapp, sid, "src/app.py") == 2
        and iterations(sapp, sid, "README.md") == 2
    )
    # no echo: the watcher suppressed the materializer's writes (and counted them),
    # leaked none; the only local changes were the user's (edit, chmod with it,
    # deletion, barrier)
    assert st["stats"]["echoesLeaked"] == 0 and st["stats"]["echoesSuppressed"] >= 5, (
        st["stats"]
    )
    assert st["stats"]["localChanges"] == 3, st["stats"]
    assert st["state"] == "active" and st["conflicts"] == [] and st["filesTracked"] == 4


def test_editors_and_tools_each_change_arrives_once_without_temp_files(
    sapp, gw, folder
):
    sid = new_session(sapp)
    for name in ("vim.txt", "sed.txt", "py.txt"):
        agent_write(gw, sid, name, b"a line with a\nanother a\n")
    start(sapp, sid, folder)
    wait_until(
        lambda: all((folder / n).is_file() for n in ("vim.txt", "sed.txt", "py.txt")),
        60,
        what="files",
    )
    # (an edit made before the watcher looked at our write would leave nothing to
    # suppress)
    wait_until(
        lambda: status(sapp, sid)["stats"]["echoesSuppressed"] == 3,
        60,
        what="the echoes suppressed",
    )

    vim = ensure_tool("vim")
    # vim's default swap/backup behaviour (swapfile, writebackup, backupcopy=auto): it
    # probes the folder with 4913, renames the file to vim.txt~, writes a new vim.txt,
    # deletes the backup and its swap files. The default 'backupskip' skips backups
    # under /tmp, where pytest's folders are: cleared here so vim does its rename dance
    # as it would in a home directory.
    subprocess.run(
        [
            vim,
            "-u",
            "NONE",
            "-N",
            "-es",
            "-c",
            "set writebackup backupcopy=auto backupskip=",
            "-c",
            "%s/a/b/g",
            "-c",
            "wq",
            str(folder / "vim.txt"),
        ],
        check=True,
        timeout=30,
        stdin=subprocess.DEVNULL,
    )
    subprocess.run(
        ["sed", "-i", "s/a/c/g", str(folder / "sed.txt")], check=True, timeout=30
    )
    tmp = folder / ".py.txt.tmp-123"
    tmp.write_text("python replaced\n")
    os.replace(tmp, folder / "py.txt")
    wait_until(
        lambda: upstream(sapp, sid, "vim.txt") == "b line with b\nbnother b\n",
        60,
        what="vim's save",
    )
    wait_until(
        lambda: upstream(sapp, sid, "sed.txt") == "c line with c\ncnother c\n",
        60,
        what="sed -i",
    )
    wait_until(
        lambda: upstream(sapp, sid, "py.txt") == "python replaced\n",
        60,
        what="the atomic replace",
    )
    barrier(sapp, sid, folder)
    files = upstream_files(sapp, sid)
    assert {p: i for p, i in files.items() if not p.startswith("zz-")} == {
        "vim.txt": 2,
        "sed.txt": 2,
        "py.txt": 2,
    }
    stats = status(sapp, sid)["stats"]
    assert stats["echoesLeaked"] == 0 and stats["echoesSuppressed"] == 3, stats
    assert stats["localChanges"] == 4  # three saves and the barrier


def test_git_checkout_of_another_branch(sapp, gw, folder):
    sid = new_session(sapp)
    for i in range(1, 6):
        agent_write(gw, sid, f"f{i}.txt", f"base {i}\n".encode())
    start(sapp, sid, folder)
    wait_until(
        lambda: all((folder / f"f{i}.txt").is_file() for i in range(1, 6)),
        60,
        what="files",
    )
    git = [
        "git",
        "-C",
        str(folder),
        "-c",
        "user.email=t@example.com",
        "-c",
        "user.name=t",
        "-c",
        "init.defaultBranch=main",
    ]
    ensure_tool("git")
    (folder / ".gitignore").write_text("build/\n*.o\n")
    for args in (
        ["init", "-q"],
        ["add", "-A"],
        ["commit", "-qm", "base"],
        ["checkout", "-qb", "feature"],
    ):
        subprocess.run(git + args, check=True, timeout=30)
    (folder / "f1.txt").write_text("feature 1\n")
    (folder / "f2.txt").write_text("feature 2\n")
    (folder / "f3.txt").unlink()
    (folder / "f6.txt").write_text("only on feature\n")
    (folder / "build").mkdir()
    (folder / "build/out.o").write_bytes(b"ignored by .gitignore")
    subprocess.run(git + ["add", "-A"], check=True, timeout=30)
    subprocess.run(git + ["commit", "-qm", "feature"], check=True, timeout=30)
    wait_until(
        lambda: (
            upstream(sapp, sid, "f6.txt") == "only on feature\n"
            and "f3.txt" not in upstream_files(sapp, sid)
        ),
        10,
        what="the feature edits",
    )
    barrier(sapp, sid, folder)
    before = {
        p: iterations(sapp, sid, p)
        for p in ("f1.txt", "f2.txt", "f3.txt", "f4.txt", "f6.txt")
    }

    subprocess.run(git + ["checkout", "-q", "main"], check=True, timeout=30)
    wait_until(
        lambda: (
            upstream(sapp, sid, "f1.txt") == "base 1\n"
            and upstream(sapp, sid, "f3.txt") == "base 3\n"
            and "f6.txt" not in upstream_files(sapp, sid)
        ),
        10,
        what="the checkout upstream",
    )
    barrier(sapp, sid, folder)
    after = {p: iterations(sapp, sid, p) for p in before}
    assert {p: after[p] - before[p] for p in before} == {
        "f1.txt": 1,
        "f2.txt": 1,
        "f3.txt": 1,
        "f4.txt": 0,
        "f6.txt": 1,
    }
    files = upstream_files(sapp, sid)
    assert (
        not any(p.startswith((".git/", "build/")) for p in files)
        and ".gitignore" in files
    )


def test_cp_r_of_a_thousand_files(sapp, gw, folder, tmp_path):
    sid = new_session(sapp)
    start(sapp, sid, folder)
    tree = tmp_path / "tree"
    for d in range(20):
        (tree / f"d{d:02}").mkdir(parents=True)
        for i in range(50):
            (tree / f"d{d:02}" / f"file{i:03}.txt").write_text(
                f"file {d}/{i}\n" * (1 + i % 7)
            )
    subprocess.run(
        ["cp", "-r", str(tree), str(folder / "tree")], check=True, timeout=60
    )
    wait_until(
        lambda: len(upstream_files(sapp, sid)) >= 1000,
        60,
        interval=0.2,
        what="1000 files upstream",
    )
    barrier(sapp, sid, folder)
    files = {
        p: i for p, i in upstream_files(sapp, sid).items() if p.startswith("tree/")
    }
    assert len(files) == 1000 and set(files.values()) == {1}
    assert upstream(sapp, sid, "tree/d07/file006.txt") == "file 7/6\n" * 7
    st = status(sapp, sid)
    # once each upstream (1000 and the barrier). localChanges may count one more for a
    # file looked at while cp was still writing it (empty, on a loaded machine),
    # superseded before it was sent.
    assert st["stats"]["writeBacksAccepted"] == 1001 and st["filesTracked"] == 1001, st[
        "stats"
    ]
    assert st["stats"]["echoesLeaked"] == 0


def _hold_writebacks(gw: BackgroundGateway, sid: str) -> None:
    async def hold(g):
        await g.replication.feeds[sid].write_lock.acquire()

    gw.call(hold)


def _release_writebacks(gw: BackgroundGateway, sid: str) -> None:
    gw.call(lambda g: g.replication.feeds[sid].write_lock.release())


def test_agent_and_user_at_once_is_a_conflict_and_both_are_kept(sapp, gw, folder):
    sid = new_session(sapp)
    agent_write(gw, sid, "app.py", b"def f():\n    return 1\n")
    agent_write(gw, sid, "notes.md", b"v1\n")
    start(sapp, sid, folder)
    wait_until(lambda: (folder / "notes.md").is_file(), 60, what="files")

    # The user's save is on its way upstream while the agent writes the same file.
    _hold_writebacks(gw, sid)
    try:
        (folder / "app.py").write_text("def f():\n    return 'user'\n")
        wait_until(
            lambda: status(sapp, sid)["pendingWrites"] == 1,
            60,
            what="the user's write-back",
        )
        agent_write(gw, sid, "app.py", b"def f():\n    return 'agent'\n")
        wait_until(lambda: status(sapp, sid)["conflicts"], 60, what="the conflict")
    finally:
        _release_writebacks(gw, sid)
    copy = folder / "app.upstream-2.py"
    wait_until(lambda: copy.is_file(), 60, what="the upstream version beside the file")
    assert (folder / "app.py").read_text() == "def f():\n    return 'user'\n"
    assert copy.read_text() == "def f():\n    return 'agent'\n"
    c = wait_until(
        lambda: (
            status(sapp, sid)["conflicts"][0].get("upstream")
            and status(sapp, sid)["conflicts"][0]
        )
    )
    assert (
        c["path"] == "app.py"
        and c["upstreamIteration"] == 2
        and c["upstreamCopy"] == "app.upstream-2.py"
    )
    assert (
        c["local"] == "def f():\n    return 'user'\n"
        and c["upstream"] == "def f():\n    return 'agent'\n"
    )
    assert upstream(sapp, sid, "app.py") == "def f():\n    return 'agent'\n"
    assert "app.upstream-2.py" not in upstream_files(sapp, sid)

    # merged: the user edits the file into the result, then settles it in one action
    (folder / "app.py").write_text("def f():\n    return 'both'\n")
    wait_until(
        lambda: (
            status(sapp, sid)["conflicts"][0]["localHash"]
            == sha(b"def f():\n    return 'both'\n")
        ),
        60,
    )
    sapp.invoke("resolve_conflict", sessionId=sid, path="app.py", resolution="merged")
    wait_until(
        lambda: upstream(sapp, sid, "app.py") == "def f():\n    return 'both'\n",
        60,
        what="the merge upstream",
    )
    assert not copy.exists() and status(sapp, sid)["conflicts"] == []

    # an upstream change to a path with an unsent local change (sync stopped): accept
    # upstream
    sapp.invoke("stop_sync", sessionId=sid)
    (folder / "notes.md").write_text("local notes\n")
    agent_write(gw, sid, "notes.md", b"agent notes\n")
    start(sapp, sid, folder)
    wait_until(
        lambda: (folder / "notes.upstream-2.md").is_file(),
        60,
        what="the second conflict",
    )
    assert (folder / "notes.md").read_text() == "local notes\n"
    sapp.invoke(
        "resolve_conflict", sessionId=sid, path="notes.md", resolution="accept_upstream"
    )
    wait_until(
        lambda: (folder / "notes.md").read_text() == "agent notes\n",
        60,
        what="upstream accepted",
    )
    assert not (folder / "notes.upstream-2.md").exists()
    barrier(sapp, sid, folder)
    assert (
        upstream(sapp, sid, "notes.md") == "agent notes\n"
        and iterations(sapp, sid, "notes.md") == 2
    )
    with pytest.raises(InvokeError) as e:
        sapp.invoke(
            "resolve_conflict", sessionId=sid, path="notes.md", resolution="keep_local"
        )
    assert e.value.code == "NOT_FOUND"


def test_malicious_notifications_write_nothing_outside(sapp, gw, folder, tmp_path):
    sid = new_session(sapp)
    agent_write(gw, sid, "ok.txt", b"fine")
    outside = tmp_path / "outside"
    outside.mkdir()
    start(sapp, sid, folder)
    wait_until(lambda: (folder / "ok.txt").is_file(), 60)
    (folder / "link").symlink_to(outside, target_is_directory=True)

    def push(g):
        for r in g.replication.feeds[sid].replicas:
            for i, path in enumerate(
                (
                    "../escape.txt",
                    str(outside / "abs.txt"),
                    "link/evil.txt",
                    "a/../../b.txt",
                    ".git/hooks/post-checkout",
                )
            ):
                r.send(
                    wire.Notification(
                        sequence=10_000 + i,
                        filepath=path,
                        contentHash=sha(b"evil"),
                        size=4,
                        permissions=0o755,
                        inlineContent=b"evil",
                        iteration=1,
                    )
                )
            r.send(wire.Heartbeat(sequence=r.cursor or 0))

    gw.call(push)
    wait_until(
        lambda: len(status(sapp, sid)["rejected"]) >= 5, 60, what="the rejections"
    )
    assert (
        list(outside.iterdir()) == []
        and not (tmp_path / "escape.txt").exists()
        and not (tmp_path / "b.txt").exists()
    )
    assert not (folder / ".git").exists()
    reasons = " ".join(r["reason"] for r in status(sapp, sid)["rejected"])
    assert (
        "escapes" in reasons
        and "absolute" in reasons
        and "symlink" in reasons
        and ".git" in reasons
    )
    assert status(sapp, sid)["state"] == "active"


def test_start_sync_refuses_a_foreign_non_empty_folder_unless_confirmed(
    sapp, gw, folder
):
    sid = new_session(sapp)
    agent_write(gw, sid, "same.txt", b"same\n")
    agent_write(gw, sid, "theirs.txt", b"upstream\n")
    folder.mkdir()
    (folder / "mine.txt").write_text("my own file\n")
    (folder / "same.txt").write_text("same\n")
    with pytest.raises(InvokeError) as e:
        sapp.invoke("start_sync", sessionId=sid, localDir=str(folder))
    assert (
        e.value.code == "FOLDER_NOT_EMPTY"
        and "confirm" in e.value.body["error"]["message"]
    )
    with pytest.raises(InvokeError) as e:
        sapp.invoke("start_sync", sessionId=sid, localDir="relative/dir")
    assert e.value.code == "INVALID_ARGUMENTS"
    start(sapp, sid, folder, confirm=True)
    wait_until(
        lambda: upstream(sapp, sid, "mine.txt") == "my own file\n",
        60,
        what="the local file merged upstream",
    )
    wait_until(lambda: (folder / "theirs.txt").is_file(), 60)
    barrier(sapp, sid, folder)
    assert (
        iterations(sapp, sid, "same.txt") == 1 and status(sapp, sid)["conflicts"] == []
    )
    # the same folder again for the same session needs no confirmation
    sapp.invoke("stop_sync", sessionId=sid)
    assert status(sapp, sid)["state"] == "stopped"
    start(sapp, sid, folder)


def test_deleted_or_emptied_folder_pauses_and_deletes_nothing_upstream(
    sapp, gw, folder
):
    sid = new_session(sapp)
    for i in range(4):
        agent_write(gw, sid, f"dir/f{i}.txt", b"keep me")
    start(sapp, sid, folder)
    wait_until(lambda: len(list((folder / "dir").glob("*.txt"))) == 4, 60)
    shutil.rmtree(folder / "dir")
    st = wait_until(
        lambda: (s := status(sapp, sid))["state"] == "paused" and s,
        60,
        what="the pause",
    )
    assert "emptied" in st["error"] and "nothing was deleted upstream" in st["error"]
    assert len(upstream_files(sapp, sid)) == 4
    start(sapp, sid, folder)  # resumes and restores the files from upstream
    wait_until(
        lambda: len(list((folder / "dir").glob("*.txt"))) == 4, 60, what="the restore"
    )
    assert status(sapp, sid)["state"] == "active"

    shutil.rmtree(folder)
    st = wait_until(
        lambda: (s := status(sapp, sid))["state"] == "paused" and s,
        60,
        what="the pause",
    )
    assert "deleted" in st["error"] and len(upstream_files(sapp, sid)) == 4


def test_watcher_failures_are_detected_rescanned_and_reported(sapp, gw, folder):
    sid = new_session(sapp)
    start(sapp, sid, folder)

    # Each incident is looked for as it happens: the status lists the last 10, and one
    # write can raise several of a kind.
    def reported(kind: str) -> bool:
        return kind in {i["kind"] for i in status(sapp, sid)["incidents"]}

    # an exception in the watchdog handler (injected): watchdog's thread would die; the
    # change still arrives
    (folder / "crashme.txt").write_text("handler failed on me")
    wait_until(
        lambda: upstream(sapp, sid, "crashme.txt") == "handler failed on me",
        60,
        what="the rescan",
    )
    wait_until(lambda: reported("handler_error"), 60, what="the handler error reported")
    # events lost as in an inotify queue overflow (injected): the rescan finds what they
    # were about
    (folder / "overflowme.txt").write_text("1")
    for i in range(3):
        (folder / f"lost{i}.txt").write_text(f"lost {i}")
    wait_until(
        lambda: all(
            upstream(sapp, sid, f"lost{i}.txt") == f"lost {i}" for i in range(3)
        ),
        60,
        what="rescan",
    )
    wait_until(lambda: reported("overflow"), 60, what="the overflow reported")
    # a folder that could not be watched (injected): polled from then on
    (folder / "unwatchedme").mkdir()
    (folder / "unwatchedme/inside.txt").write_text("polled")
    wait_until(lambda: upstream(sapp, sid, "unwatchedme/inside.txt") == "polled", 60)
    wait_until(
        lambda: reported("watch_limit"), 60, what="the unwatched folder reported"
    )
    # the watcher actor itself crashes: the restarted one rescans and finds the edit
    # made meanwhile
    restarts = sapp.status()["watcher"]["restarts"]
    assert sapp.dimctl("crash", "watcher").returncode == 0
    (folder / "during-restart.txt").write_text("made while the watcher restarted")
    wait_until(lambda: sapp.status()["watcher"]["restarts"] == restarts + 1, 60)
    wait_until(
        lambda: (
            upstream(sapp, sid, "during-restart.txt")
            == "made while the watcher restarted"
        ),
        60,
    )


class SyncedThenOffline:
    """The start of the offline-edit tests: an app syncing a new session (a.txt and
    b.txt written upstream first), whose gateway then stops. `restart_gateway` brings it
    back on the same port and data."""

    def __init__(self, tmp_path: Path):
        self.port = free_port()
        self.data = tmp_path / "gw"
        self.home = tmp_path / "home"
        self.home.mkdir()
        self.folder = tmp_path / "sync"
        self.gw = BackgroundGateway(
            port=self.port, rate_limit=100_000, data_dir=self.data
        ).start()
        self.app = App(self.home, ["--gateway", self.gw.url])

    def go_offline(self) -> str:
        app, gw = self.app, self.gw
        app.wait_connected()
        sid = new_session(app)
        for name in ("a.txt", "b.txt"):
            agent_write(gw, sid, name, b"upstream\n")
        start(app, sid, self.folder)
        wait_until(lambda: (self.folder / "b.txt").is_file(), 60)
        gw.stop()
        wait_until(
            lambda: status(app, sid)["link"] != "connected", 60, what="the link down"
        )
        return sid

    def restart_gateway(self) -> BackgroundGateway:
        self.gw = BackgroundGateway(
            port=self.port, rate_limit=100_000, data_dir=self.data
        ).start()
        return self.gw

    def close(self) -> None:
        self.app.stop()
        self.gw.stop()


def test_kill_9_with_unsent_edits_sends_them_after_the_restart(tmp_path):
    s = SyncedThenOffline(tmp_path)
    app, home, folder = s.app, s.home, s.folder
    try:
        sid = s.go_offline()
        (folder / "a.txt").write_text("edited offline\n")
        (folder / "c.txt").write_text("created offline\n")
        (folder / "b.txt").unlink()
        wait_until(
            lambda: status(app, sid)["pendingWrites"] == 3,
            60,
            what="three pending writes",
        )
        app.proc.kill()  # kill -9: no chance to flush anything
        app.proc.wait(10)
        app.log.close()
        # each unsent change was journaled with the iteration the file on disk came from
        # (0: a new file)
        with sqlite3.connect(home / "data" / "journal.sqlite") as db:
            bases = dict(
                db.execute(
                    "SELECT path, base_iteration FROM changes WHERE origin = 'local'"
                    " AND state IN ('pending', 'sent')"
                )
            )
        assert bases == {"a.txt": 1, "b.txt": 1, "c.txt": 0}, bases
        (home / "run" / "runtime.json").unlink()  # the killed instance's, left behind
        gw = s.restart_gateway()
        app = s.app = App(home, ["--gateway", gw.url])
        app.wait_connected()
        wait_until(
            lambda: upstream(app, sid, "c.txt") == "created offline\n",
            60,
            what="the edits after the restart",
        )
        wait_until(
            lambda: (
                upstream(app, sid, "a.txt") == "edited offline\n"
                and "b.txt" not in upstream_files(app, sid)
            ),
            60,
        )
        wait_until(lambda: status(app, sid)["pendingWrites"] == 0, 60)
        assert iterations(app, sid, "a.txt") == 2 and iterations(app, sid, "b.txt") == 2
        assert iterations(app, sid, "c.txt") == 1
    finally:
        s.close()


def test_sync_commands_validate_arguments(sapp):
    with pytest.raises(InvokeError) as e:
        sapp.invoke("sync_status", sessionId="nope")
    assert e.value.code == "NOT_FOUND"
    with pytest.raises(InvokeError) as e:
        sapp.invoke("start_sync", localDir="/tmp/x")
    assert e.value.code == "INVALID_ARGUMENTS"
    with pytest.raises(InvokeError) as e:
        sapp.invoke(
            "resolve_conflict", sessionId="nope", path="x", resolution="keep_local"
        )
    assert e.value.code == "NOT_FOUND"


def test_pause_and_resume_every_sync_from_the_tray_commands(sapp, gw, folder):
    sid = new_session(sapp)
    agent_write(gw, sid, "a.txt", b"one")
    start(sapp, sid, folder)
    wait_until(lambda: (folder / "a.txt").is_file(), 60)
    assert sid in sapp.invoke("sync_pause")["paused"]
    assert status(sapp, sid)["state"] == "paused"
    (folder / "a.txt").write_text("edited while paused")
    agent_write(gw, sid, "b.txt", b"two")
    assert sid in sapp.invoke("sync_resume")["resumed"]
    wait_until(
        lambda: upstream(sapp, sid, "a.txt") == "edited while paused",
        60,
        what="the rescan after resume",
    )
    wait_until(
        lambda: (folder / "b.txt").is_file(), 60, what="what upstream did meanwhile"
    )
    assert status(sapp, sid)["state"] == "active"


def test_a_session_the_gateway_does_not_know_is_an_error_not_a_crash(sapp, tmp_path):
    st = sapp.invoke(
        "start_sync", sessionId="no-such-session", localDir=str(tmp_path / "x")
    )
    assert st["state"] == "active"
    st = wait_until(
        lambda: (s := status(sapp, "no-such-session"))["state"] == "error" and s,
        60,
        what="the error",
    )
    assert "no such session" in st["error"] and st["link"] == "refused"
    assert sapp.invoke("stop_sync", sessionId="no-such-session")["state"] == "stopped"


def test_an_echo_the_echo_set_misses_is_counted_as_leaked(sapp, gw, folder):
    # FAULTS echo_miss=leakme (tests/faulty_watcher.py): the watcher does not look files
    # named *leakme* up in the echo set, as if their entries had expired. The journal
    # still drops the change (its own hash checks), so localChanges cannot see it:
    # echoesLeaked does.
    sid = new_session(sapp)
    agent_write(gw, sid, "plain.txt", b"plain\n")
    start(sapp, sid, folder)
    wait_until(lambda: (folder / "plain.txt").is_file(), 60, what="the first file")
    # A rescan that lists the file before its event is handled sees it as a state, not a
    # change, and cannot tell an echo (docs/sync.md §3): on a loaded machine the
    # watcher's health checks can start one at that moment. Then a file of another name
    # is written, up to three times.
    for attempt in range(3):
        name = f"leakme-{attempt}.txt"
        agent_write(gw, sid, name, b"an echo nobody suppresses\n")
        wait_until(
            lambda name=name: (folder / name).is_file(), 60, what="the file that leaks"
        )
        try:
            wait_until(
                lambda: status(sapp, sid)["stats"]["echoesLeaked"],
                20,
                what="the leak counted",
            )
            break
        except AssertionError:
            if attempt == 2:
                raise
    barrier(sapp, sid, folder)
    st = status(sapp, sid)
    assert st["stats"]["echoesLeaked"] >= 1 and st["stats"]["echoesSuppressed"] >= 1, (
        st["stats"]
    )
    assert st["stats"]["localChanges"] == 1  # the barrier only
    assert iterations(sapp, sid, name) == 1


def test_editing_a_gitignore_uploads_what_it_no_longer_ignores(sapp, gw, folder):
    sid = new_session(sapp)
    start(sapp, sid, folder)
    (folder / ".gitignore").write_text("*.data\nscratch/\n")
    (folder / "sub").mkdir()
    (folder / "sub/.gitignore").write_text("local.txt\n")
    barrier(sapp, sid, folder)
    (folder / "a.data").write_text("was ignored\n")
    (folder / "scratch").mkdir()
    (folder / "scratch/notes.txt").write_text("ignored folder\n")
    (folder / "sub/local.txt").write_text("ignored below\n")
    barrier(sapp, sid, folder)
    assert {"a.data", "scratch/notes.txt", "sub/local.txt"}.isdisjoint(
        upstream_files(sapp, sid)
    )

    # vim rewrites the root .gitignore without the rules; the files themselves are not
    # touched
    vim = ensure_tool("vim")
    subprocess.run(
        [
            vim,
            "-u",
            "NONE",
            "-N",
            "-es",
            "-c",
            "g/data\\|scratch/d",
            "-c",
            "wq",
            str(folder / ".gitignore"),
        ],
        check=True,
        timeout=30,
        stdin=subprocess.DEVNULL,
    )
    wait_until(
        lambda: (
            upstream(sapp, sid, "a.data") == "was ignored\n"
            and upstream(sapp, sid, "scratch/notes.txt") == "ignored folder\n"
        ),
        10,
        what="the un-ignored files",
    )
    (folder / "sub/.gitignore").unlink()
    wait_until(
        lambda: upstream(sapp, sid, "sub/local.txt") == "ignored below\n",
        60,
        what="the file below",
    )
    barrier(sapp, sid, folder)
    assert (
        iterations(sapp, sid, "a.data") == 1
        and status(sapp, sid)["stats"]["echoesLeaked"] == 0
    )


def test_start_sync_without_a_folder_needs_sync_root(sapp):
    # joined: without sync_auto_start (and a sync_root) nothing starts
    sid = new_session(sapp)
    with pytest.raises(InvokeError) as e:
        status(sapp, sid)
    assert e.value.code == "NOT_FOUND"
    assert sapp.invoke("sync_defaults", sessionId=sid) == {
        "localDir": None,
        "syncRoot": None,
        "autoStart": False,
    }
    with pytest.raises(InvokeError) as e:
        sapp.invoke("start_sync", sessionId=sid)
    assert (
        e.value.code == "INVALID_ARGUMENTS"
        and "sync_root" in e.value.body["error"]["message"]
    )


# --- the sync settings: sync_root, sync_auto_start, sync_extra_ignore -----------------


@pytest.fixture(scope="module")
def sync_root(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("sync-root")


@pytest.fixture(scope="module")
def rapp(gw, sync_root, tmp_path_factory):
    """An app with the sync settings set, on the module's gateway."""
    home = tmp_path_factory.mktemp("dim-home-settings")
    write_settings(
        home,
        f'sync_root = "{sync_root}"\nsync_auto_start = true\n'
        'sync_extra_ignore = ["*.log", "private/"]\n',
    )
    a = App(home, ["--gateway", gw.url])
    a.wait_connected()
    yield a
    a.stop()


def named_session(app: App, name: str) -> str:
    return app.invoke("create_session", agentType="coding-agent", name=name)["session"][
        "id"
    ]


def test_auto_start_syncs_a_joined_session_into_its_folder_under_sync_root(
    rapp, gw, sync_root
):
    sid = named_session(rapp, "Auto: start/1")
    agent_write(gw, sid, "src/main.py", b"print('hi')\n")
    agent_write(gw, sid, "build.log", b"the agent's log\n")
    rapp.invoke("join_session", sessionId=sid)
    folder = sync_root / "Auto- start-1"  # the name made into one safe folder name
    wait_until(
        lambda: (folder / "src/main.py").is_file(),
        60,
        what="the auto-started sync's files on disk",
    )
    st = wait_until(
        lambda: (s := status(rapp, sid))["link"] == "connected" and s,
        60,
        what="the link",
    )
    assert st["state"] == "active" and st["localDir"] == os.path.realpath(folder)
    # sync_extra_ignore is a local rule, like .gitignore: upstream's files are written
    # all the same
    wait_until(
        lambda: (folder / "build.log").is_file(),
        60,
        what="the ignored pattern's upstream file",
    )

    (folder / "notes.txt").write_text("synced\n")
    (folder / "trace.log").write_text("ignored by the setting\n")
    (folder / "private").mkdir()
    (folder / "private/key.pem").write_text("ignored folder\n")
    (folder / "build.log").write_text("edited, but ignored\n")
    # the folder's own rules come after the setting's
    (folder / ".gitignore").write_text("!keep.log\n")
    (folder / "keep.log").write_text("re-included\n")
    barrier(rapp, sid, folder)
    files = upstream_files(rapp, sid)
    assert (
        upstream(rapp, sid, "notes.txt") == "synced\n"
        and upstream(rapp, sid, "keep.log") == "re-included\n"
    )
    assert "trace.log" not in files and "private/key.pem" not in files
    assert (
        upstream(rapp, sid, "build.log") == "the agent's log\n"
        and iterations(rapp, sid, "build.log") == 1
    )
    stats = status(rapp, sid)["stats"]
    # (src/main.py's echo; build.log is ignored, so the watcher never even looks at it)
    assert stats["echoesLeaked"] == 0 and stats["echoesSuppressed"] >= 1, stats
    # joined again (another page, a reload): it is running already, nothing changes
    rapp.invoke("join_session", sessionId=sid)
    assert status(rapp, sid)["localDir"] == os.path.realpath(folder)


def test_start_sync_without_a_folder_uses_the_one_under_sync_root(rapp, gw, sync_root):
    sid = named_session(rapp, "Manual one")  # not joined: no auto start
    agent_write(gw, sid, "a.txt", b"a\n")
    defaults = rapp.invoke("sync_defaults", sessionId=sid)
    assert defaults == {
        "localDir": str(sync_root / "Manual one"),
        "syncRoot": str(sync_root),
        "autoStart": True,
    }
    st = rapp.invoke("start_sync", sessionId=sid)
    assert st["localDir"] == os.path.realpath(sync_root / "Manual one")
    wait_until(
        lambda: (sync_root / "Manual one/a.txt").is_file(),
        60,
        what="the file in the default folder",
    )
    # a second session of the same name gets its own folder, the id added
    other = named_session(rapp, "Manual one")
    assert rapp.invoke("sync_defaults", sessionId=other)["localDir"] == str(
        sync_root / f"Manual one-{other[:8]}"
    )


def test_auto_start_into_a_foreign_non_empty_folder_is_refused_and_shown(
    rapp, gw, sync_root
):
    folder = sync_root / "Busy"
    folder.mkdir()
    (folder / "mine.txt").write_text("my own file\n")
    sid = named_session(rapp, "Busy")
    agent_write(gw, sid, "theirs.txt", b"upstream\n")
    rapp.invoke("join_session", sessionId=sid)
    st = wait_until(lambda: _refused(rapp, sid), 60, what="the refusal in sync_status")
    assert (
        st["state"] == "stopped"
        and st["errorCode"] == "FOLDER_NOT_EMPTY"
        and "not empty" in st["error"]
    )
    assert st["localDir"] == str(folder)
    # never confirmed automatically, however often it is joined
    rapp.invoke("join_session", sessionId=sid)
    assert _refused(rapp, sid)["errorCode"] == "FOLDER_NOT_EMPTY"
    assert sorted(p.name for p in folder.iterdir()) == ["mine.txt"] and upstream_files(
        rapp, sid
    ) == {"theirs.txt": 1}
    # the user confirms (the panel's button): into the default folder, merged
    rapp.invoke("start_sync", sessionId=sid, confirm=True)
    wait_until(
        lambda: (
            (folder / "theirs.txt").is_file()
            and upstream(rapp, sid, "mine.txt") == "my own file\n"
        ),
        15,
        what="the merge",
    )
    assert status(rapp, sid)["error"] is None and "errorCode" not in status(rapp, sid)


def _refused(app: App, sid: str) -> dict | None:
    try:
        st = status(app, sid)
    except InvokeError:
        return None
    return st if st.get("errorCode") else None


def test_unsent_edits_survive_a_restore_without_turning_into_conflicts(tmp_path):
    """The folder moved away (sync paused) and back while offline: start_sync restores,
    upstream offers everything again from sequence 0, and the edit journaled offline,
    and the one made while the folder was away (found by the rescan), both based on the
    iteration upstream still has, are sent: not conflicts."""
    s = SyncedThenOffline(tmp_path)
    app, folder = s.app, s.folder
    try:
        sid = s.go_offline()
        (folder / "a.txt").write_text("edited offline\n")
        wait_until(
            lambda: status(app, sid)["pendingWrites"] == 1, 60, what="the pending write"
        )
        os.rename(folder, tmp_path / "away")
        wait_until(lambda: status(app, sid)["state"] == "paused", 60, what="the pause")
        (tmp_path / "away/b.txt").write_text("edited while away\n")
        os.rename(tmp_path / "away", folder)
        s.restart_gateway()
        start(app, sid, folder)  # resumes: the restore offers every file again
        wait_until(
            lambda: (
                upstream(app, sid, "a.txt") == "edited offline\n"
                and upstream(app, sid, "b.txt") == "edited while away\n"
            ),
            20,
            what="the edits upstream",
        )
        barrier(app, sid, folder)
        st = status(app, sid)
        assert (
            st["conflicts"] == []
            and st["heldWrites"] == 0
            and st["stats"]["conflicts"] == 0
        ), st
        assert iterations(app, sid, "a.txt") == 2 and iterations(app, sid, "b.txt") == 2
        assert not list(folder.glob("*.upstream-*"))
    finally:
        s.close()


# --- the inotify watch limit, for real ------------------------------------------------


def limited_app(home: Path, args: list[str], watches: int) -> App:
    """dim-desktop in a user namespace of its own whose inotify watch limit is
    `watches`. The limit is per user namespace (/proc/sys/user/max_inotify_watches,
    checked at every level up to the machine's fs.inotify.max_user_watches), so lowering
    it there leaves every other process alone."""
    return App(home, args, prefix=watch_limited(watches))


@pytest.mark.skipif(
    not userns_watch_limit_works(),
    reason="no user namespace to lower the inotify watch limit in (test_watcher_failures_are_"
    "detected_rescanned_and_reported covers the detection with injected faults)",
)
def test_folders_past_the_inotify_watch_limit_are_polled_and_reported(gw, tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    folder = tmp_path / "sync"
    for name in ("a", "b", "c", "d", "e/f"):
        (folder / "mine" / name).mkdir(parents=True)
    # 4 watches for a tree of 10 folders: watchdog 7.1.0 watches the root and 3 folders
    # below it and says nothing about the rest, 7.1.1 raises ENOSPC and watches none:
    # the same outcome either way
    app = limited_app(home, ["--gateway", gw.url], watches=4)
    try:
        app.wait_connected()
        sid = new_session(app)
        agent_write(gw, sid, "up/one/x.txt", b"from upstream\n")
        start(app, sid, folder, confirm=True)
        wait_until(
            lambda: (folder / "up/one/x.txt").is_file(), 60, what="upstream's file"
        )
        st = wait_until(
            lambda: (s := status(app, sid))["warning"] and s, 60, what="the warning"
        )
        # what happened, what it means, what to do (above the limit in force: the
        # namespace's 4)
        w = st["warning"]
        assert (
            "could not be watched for changes" in w
            and "inotify watch limit (fs.inotify.max_user_watches)" in w
        ), w
        assert (
            "rescan every 2 s" in w
            and "raise the limit (now 4): sudo sysctl fs.inotify.max_user_watches=" in w
        ), w
        assert (
            "watch_limit" in {i["kind"] for i in st["incidents"]}
            and st["state"] == "active"
        )
        # every folder's edits arrive, watched or not: none is silently lost
        targets = [f"mine/{n}/new.txt" for n in ("a", "b", "c", "d", "e", "e/f")] + [
            "up/one/x.txt",
            "top.txt",
        ]
        for rel in targets:
            (folder / rel).write_text(f"local {rel}\n")
        wait_until(
            lambda: all(upstream(app, sid, rel) == f"local {rel}\n" for rel in targets),
            20,
            what="every edit upstream",
        )
        # a restarted watcher watches again, checks again, and still says so
        restarts = app.status()["watcher"]["restarts"]
        assert app.dimctl("crash", "watcher").returncode == 0
        wait_until(lambda: app.status()["watcher"]["restarts"] == restarts + 1, 60)
        (folder / "mine/e/f/after.txt").write_text("after the restart\n")
        wait_until(
            lambda: upstream(app, sid, "mine/e/f/after.txt") == "after the restart\n",
            60,
        )
        assert status(app, sid)["warning"]
        assert app.status()["watcher"]["polling"] == 1
    finally:
        app.stop()
