"""Per-item failures in sync, end to end: a real dim-desktop, a real dev gateway writing
through run_turn /write, a real folder (a small tmpfs where the disk must fill up).

A name that cannot be represented, a name too long, a full disk, a file too large: that
item is listed in sync_status.failed with its reason, the rest syncs, the app never
exits, and an upstream change that could not be written is never acknowledged as done
(it arrives once it can).
"""

from __future__ import annotations

import hashlib
import os

import pytest
from apphelpers import App, wait_until
from diskhelpers import fill, immutable, small_disk
from synchelpers import (
    failed,
    history_of,
    new_session,
    run_script,
    start,
    status,
    upstream,
)

from dim_actors.wire import replication as wire


@pytest.fixture
def app(gw_app):
    return gw_app  # against the module's dev gateway (conftest.gw), not an embedded one


@pytest.fixture
def tmpfs(tmp_path):
    with small_disk(tmp_path / "disk") as disk:
        yield disk


def alive(app: App) -> None:
    assert app.proc.poll() is None, (
        f"dim-desktop exited with {app.proc.returncode}: {app.output()[-3000:]}"
    )


# --- case 1: a local name that is not valid UTF-8 -------------------------------------


def test_local_name_not_utf8_is_a_failed_item_and_the_rest_syncs(app, tmp_path):
    sid = new_session(app)
    folder = tmp_path / "sync"
    start(app, sid, folder)
    bad = os.path.join(os.fsencode(folder), b"caf\xe9.txt")
    with open(bad, "wb") as f:
        f.write(b"x")
    (folder / "good.txt").write_text("fine")
    wait_until(
        lambda: upstream(app, sid, "good.txt") == "fine",
        60,
        what="the good file upstream",
    )
    wait_until(lambda: failed(app, sid), 30, what="the bad name listed as failed")
    alive(app)
    [(path, item)] = failed(app, sid).items()
    assert (
        "caf" in path
        and "not valid UTF-8" in item["reason"]
        and "rename" in item["reason"]
    )
    assert status(app, sid)["state"] == "active"
    # renamed: it syncs, and the failure is gone
    os.rename(bad, os.path.join(os.fsencode(folder), "café.txt".encode()))
    wait_until(
        lambda: upstream(app, sid, "café.txt") == "x",
        60,
        what="the renamed file upstream",
    )
    wait_until(lambda: not failed(app, sid), 30, what="the failure cleared")
    alive(app)


# --- case 2: an upstream name over 255 bytes ------------------------------------------


def test_upstream_name_too_long_fails_that_item_only(app, tmp_path):
    sid = new_session(app)
    folder = tmp_path / "sync"
    start(app, sid, folder)
    long_name = "a" * 256 + ".txt"
    run_script(
        app,
        sid,
        f"/write before.txt one\n/write {long_name} two\n/write dir/{long_name} three\n"
        "/write after.txt four",
    )
    wait_until(
        lambda: (folder / "after.txt").is_file() and (folder / "before.txt").is_file(),
        60,
        what="the other files written",
    )
    wait_until(
        lambda: len(failed(app, sid)) == 2, 30, what="both long names listed as failed"
    )
    alive(app)
    items = failed(app, sid)
    assert set(items) == {long_name, f"dir/{long_name}"}
    assert all("too long" in f["reason"] for f in items.values()), items
    st = status(app, sid)
    # never acknowledged as done: the cursor stays before the first failed change
    assert st["lastSequence"] < min(f["sequence"] for f in items.values()), st
    assert (folder / "after.txt").read_text() == "four"
    # a new connection process: the link catches up from the acknowledged point and
    # offers the failed changes again; they stay failed, counted once
    out = app.dimctl("restart", "connection")
    assert out.returncode == 0, out.stderr
    run_script(app, sid, "/write mid.txt five")
    wait_until(
        lambda: (folder / "mid.txt").is_file(), 60, what="a file after the restart"
    )
    assert set(failed(app, sid)) == {long_name, f"dir/{long_name}"}
    # the agent renames one to a name that fits and deletes the other: no failure is
    # left, and the acknowledgement moves past both
    run_script(
        app,
        sid,
        f"/rename {long_name} short.txt\n/delete dir/{long_name}\n/write end.txt six",
    )
    wait_until(
        lambda: (folder / "short.txt").is_file() and (folder / "end.txt").is_file(),
        60,
        what="the renamed file",
    )
    assert (folder / "short.txt").read_text() == "two"
    wait_until(lambda: not failed(app, sid), 30, what="no failure left")
    last = max(f["sequence"] for f in items.values())
    wait_until(
        lambda: status(app, sid)["lastSequence"] > last,
        30,
        what="the acknowledgement past the failures",
    )
    alive(app)


# --- case 9: the sync folder's disk fills up ------------------------------------------


def blob(i: int, size: int = 200_000) -> str:
    # over the inline limit: fetched through the spool, as large files are
    return f"{i}" * size


def test_disk_full_fails_items_unacknowledged_and_they_arrive_once_space_is_freed(
    gw, tmp_path, tmpfs
):
    home = tmp_path / "home"
    home.mkdir()
    app = App(home, ["--gateway", gw.url])
    try:
        app.wait_connected()
        sid = new_session(app)
        folder = tmpfs / "sync"
        start(app, sid, folder)
        # about 500 KB left: two or three of five 200 KB files fit, the rest cannot be
        # written
        filler = fill(tmpfs, leave=500_000)
        run_script(app, sid, "\n".join(f"/write f{i}.txt {blob(i)}" for i in range(5)))
        wait_until(
            lambda: upstream(app, sid, "f4.txt") is not None,
            60,
            what="the agent's files upstream",
        )
        wait_until(
            lambda: (
                len(failed(app, sid))
                + sum((folder / f"f{i}.txt").is_file() for i in range(5))
                == 5
            ),
            60,
            what="every file written or failed",
        )
        items = failed(app, sid)
        assert items, "nothing failed: the disk did not fill up"
        assert all("disk is full" in f["reason"] for f in items.values()), items
        st = status(app, sid)
        assert st["state"] == "active" and st["lastSequence"] < min(
            f["sequence"] for f in items.values()
        ), st
        # space freed: they arrive without anything else being done
        filler.unlink()
        wait_until(
            lambda: all((folder / f"f{i}.txt").is_file() for i in range(5)),
            90,
            what="every file arrived",
        )
        for i in range(5):
            assert (folder / f"f{i}.txt").read_text() == blob(i)
        wait_until(lambda: not failed(app, sid), 30, what="no failures left")

        # full again, and the app restarted meanwhile: the failed changes were never
        # acknowledged
        filler = fill(tmpfs, leave=300_000)
        run_script(app, sid, "\n".join(f"/write g{i}.txt {blob(i)}" for i in range(3)))
        wait_until(lambda: failed(app, sid), 60, what="a failure")
        app.invoke("stop_sync", sessionId=sid)
        start(app, sid, folder)
        # One status for both checks: a retry may succeed between two asks (a write that
        # now fits).
        st = wait_until(
            lambda: (
                (s := status(app, sid))["failed"]
                and all(f["retries"] >= 1 for f in s["failed"])
                and s
            ),
            60,
            what="the failures tried again after a stop and start",
        )
        assert st["lastSequence"] < min(f["sequence"] for f in st["failed"]), st
        app.stop()
        filler.unlink()
        app = App(home, ["--gateway", gw.url])
        wait_until(
            lambda: all((folder / f"g{i}.txt").is_file() for i in range(3)),
            90,
            what="every file arrived after the restart",
        )
        assert all((folder / f"g{i}.txt").read_text() == blob(i) for i in range(3))
        wait_until(
            lambda: not failed(app, sid) and status(app, sid)["state"] == "active",
            30,
            what="a clean status",
        )

        # below the floor (1% of this small disk): sync pauses, saying why, and resumes
        # by itself
        filler = fill(tmpfs)
        wait_until(
            lambda: status(app, sid)["state"] == "paused",
            30,
            what="sync paused for want of space",
        )
        st = status(app, sid)
        assert (
            "not enough free space" in st["error"]
            and "resumes by itself" in st["error"]
        ), st
        assert st["freeSpace"] < st["minFreeSpace"] <= (4 << 20) // 100, st
        run_script(app, sid, f"/write h.txt {blob(7)}")
        filler.unlink()
        wait_until(
            lambda: status(app, sid)["state"] == "active", 30, what="sync resumed"
        )
        wait_until(
            lambda: (
                (folder / "h.txt").is_file()
                and (folder / "h.txt").read_text() == blob(7)
            ),
            60,
            what="the file written while paused",
        )
        st = status(app, sid)
        assert st["error"] is None and not st["failed"] and st["pendingWrites"] == 0, st
        alive(app)
    finally:
        app.stop()


def test_a_folder_that_refuses_writes_fails_its_items_until_it_takes_them(
    app, tmp_path
):
    # We run as root, which permission bits do not stop: the immutable attribute does
    # (EPERM).
    sid = new_session(app)
    folder = tmp_path / "sync"
    start(app, sid, folder)
    run_script(app, sid, "/write locked/a.txt one")
    wait_until(lambda: (folder / "locked/a.txt").is_file(), 60, what="the first file")
    with immutable(folder / "locked"):
        run_script(app, sid, "/write locked/b.txt two\n/write free.txt three")
        wait_until(
            lambda: (folder / "free.txt").is_file(), 60, what="the file elsewhere"
        )
        wait_until(
            lambda: "locked/b.txt" in failed(app, sid),
            30,
            what="the refused write listed",
        )
        reason = failed(app, sid)["locked/b.txt"]["reason"]
        assert "not permitted" in reason, reason
        wait_until(
            lambda: failed(app, sid).get("locked/b.txt", {}).get("retries", 0) >= 1,
            60,
            what="the write tried again",
        )
    # Warned about once; its retries failing the same way are not (a read-only folder of
    # many files would flood the log).
    log = (
        (app.home / "logs" / "dim-desktop.log").read_text(errors="replace").splitlines()
    )
    warned = [line for line in log if "locked/b.txt" in line and " WARNING " in line]
    assert len(warned) == 1 and "not permitted" in warned[0], warned
    wait_until(
        lambda: (folder / "locked/b.txt").is_file(),
        90,
        what="the write retried once it can succeed",
    )
    assert (folder / "locked/b.txt").read_text() == "two"
    wait_until(lambda: not failed(app, sid), 30, what="no failures left")
    alive(app)


# --- case 17: .git however a disk spells it; portable modes ---------------------------


def test_upstream_git_spellings_are_refused_and_modes_are_portable(app, gw, tmp_path):
    sid = new_session(app)
    folder = tmp_path / "sync"
    run_script(app, sid, "/write ok.txt fine")
    start(app, sid, folder)
    wait_until(lambda: (folder / "ok.txt").is_file(), 60, what="the first file")
    evil = [
        ".GIT/hooks/pre-commit",
        ".Git/config",
        "sub/.git./hooks/x",
        ".git /hooks/x",
        "GIT~1/hooks/x",
        ".g\u200cit/hooks/x",
        ".git\ufeff/config",
        ".git::$INDEX_ALLOCATION/hooks/x",
    ]
    good = [
        ("tool.sh", 0o4777),
        ("data.txt", 0o666),
        ("plain.txt", 0o600),
        (".github/ci.yml", 0o644),
    ]
    data = b"#!/bin/sh\necho owned\n"

    def push(g):
        for r in g.replication.feeds[sid].replicas:
            for i, (path, mode) in enumerate([(p, 0o755) for p in evil] + good):
                r.send(
                    wire.Notification(
                        sequence=20_000 + i,
                        filepath=path,
                        contentHash=hashlib.sha256(data).hexdigest(),
                        size=len(data),
                        permissions=mode,
                        inlineContent=data,
                        iteration=1,
                    )
                )
            r.send(wire.Heartbeat(sequence=r.cursor or 0))

    gw.call(push)
    wait_until(
        lambda: all((folder / p).is_file() for p, _ in good),
        60,
        what="the ordinary files",
    )
    wait_until(
        lambda: len(status(app, sid)["rejected"]) >= len(evil),
        30,
        what="every .git spelling refused",
    )
    rejected = {r["path"] for r in status(app, sid)["rejected"]}
    assert rejected == set(evil), rejected
    assert sorted(x.name for x in folder.iterdir()) == [
        ".github",
        "data.txt",
        "ok.txt",
        "plain.txt",
        "tool.sh",
    ]
    modes = {p: (folder / p).stat().st_mode & 0o7777 for p, _ in good}
    assert modes == {
        "tool.sh": 0o755,
        "data.txt": 0o644,
        "plain.txt": 0o644,
        ".github/ci.yml": 0o644,
    }, modes
    # Folders it makes for the user follow the user's umask (the app's own is 077, for
    # DIM_HOME).
    user_mode = 0o777 & ~user_umask_of_this_process()
    assert {f: (folder / f).stat().st_mode & 0o777 for f in (".", ".github")} == {
        ".": user_mode,
        ".github": user_mode,
    }
    alive(app)


def user_umask_of_this_process() -> int:
    current = os.umask(0o022)  # reading the umask means setting it
    os.umask(current)
    return current


# --- case 13: a file too large; names the workspace cannot hold -----------------------


def test_too_large_and_unholdable_names_are_failed_items_and_large_files_stream(
    app, tmp_path
):
    sid = new_session(app)
    folder = tmp_path / "sync"
    start(app, sid, folder)
    assert status(app, sid)["maxFileSize"] == 100 << 20
    huge = folder / "huge.bin"
    with open(
        huge, "wb"
    ) as f:  # sparse: 101 MiB that cost nothing on disk, and must not be read
        f.truncate(101 << 20)
    (folder / "line\nbreak.txt").write_text("n")
    (folder / "back\\slash.txt").write_text("b")
    big = os.urandom(6 << 20)  # over the inline limit: sent in pieces
    (folder / "big.bin").write_bytes(big)
    (folder / "small.txt").write_text("small")
    wait_until(
        lambda: upstream(app, sid, "small.txt") == "small",
        60,
        what="the small file upstream",
    )
    wait_until(lambda: len(failed(app, sid)) == 3, 30, what="three failed items")
    items = failed(app, sid)
    assert items["huge.bin"]["reason"].startswith(
        "too large (101.0 MiB, limit 100 MiB)"
    ), items
    assert "line break" in items["line\\nbreak.txt"]["reason"], items
    assert "backslash" in items["back\\slash.txt"]["reason"], items
    assert all(f["direction"] == "local" for f in items.values())
    history = wait_until(
        lambda: history_of(app, sid, "big.bin"), 60, what="the large file upstream"
    )
    assert [(h["size"], h["hash"]) for h in history] == [
        (len(big), hashlib.sha256(big).hexdigest())
    ], history
    st = status(app, sid)
    assert (
        upstream(app, sid, "huge.bin") is None
        and st["pendingWrites"] == 0
        and not st["rejected"]
    ), st
    # made small enough, and renamed: they sync, and nothing is left failed
    with open(huge, "r+b") as f:
        f.truncate(10)
    os.rename(folder / "line\nbreak.txt", folder / "line-break.txt")
    os.rename(folder / "back\\slash.txt", folder / "back-slash.txt")
    wait_until(
        lambda: (
            upstream(app, sid, "line-break.txt") == "n"
            and upstream(app, sid, "back-slash.txt") == "b"
        ),
        60,
        what="the renamed files upstream",
    )
    wait_until(lambda: not failed(app, sid), 30, what="no failures left")
    wait_until(
        lambda: history_of(app, sid, "huge.bin"),
        30,
        what="the file, small now, upstream",
    )
    alive(app)


def test_a_large_local_file_goes_up_in_pieces_without_being_held_whole(app, tmp_path):
    sid = new_session(app)
    folder = tmp_path / "sync"
    start(app, sid, folder)
    pid = app.status()["connection"]["pid"]

    def peak() -> int:  # the connection process's peak resident memory, in bytes
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
        raise AssertionError("no VmHWM")

    before = peak()
    data = os.urandom(1 << 20) * 64  # 64 MiB, under the size limit
    (folder / "big.bin").write_bytes(data)
    history = wait_until(
        lambda: history_of(app, sid, "big.bin"), 120, what="the large file upstream"
    )
    assert [(h["size"], h["hash"]) for h in history] == [
        (len(data), hashlib.sha256(data).hexdigest())
    ]
    grew = peak() - before
    assert grew < 32 << 20, (
        f"the connection process grew by {grew >> 20} MiB sending a 64 MiB file"
    )
