"""The sync journal's database (dim_actors/sync/store.py), on real SQLite files: every
shape a user's database can be in when this version opens it, and records saved and
loaded again."""

from __future__ import annotations

import sqlite3

import pytest

from dim_actors.sync import store as store_mod
from dim_actors.sync.state import Conflict, FileRec, Sync
from dim_actors.sync.store import CHANGE_COLUMNS, SCHEMA, VERSION, Store, StoreTooNew

A, B = "a" * 64, "b" * 64

# The first shape of `changes`, before any of CHANGE_COLUMNS: the oldest the journal
# opens.
OLDEST = SCHEMA

CURRENT_COLUMNS = [
    "id",
    "session_id",
    "origin",
    "path",
    "content_hash",
    "is_deletion",
    "base_iteration",
    "recorded_at",
    *CHANGE_COLUMNS,
]


def columns(path, table: str) -> list[str]:
    with sqlite3.connect(path) as db:
        return [row[1] for row in db.execute(f"PRAGMA table_info({table})")]


def user_version(path) -> int:
    with sqlite3.connect(path) as db:
        return db.execute("PRAGMA user_version").fetchone()[0]


def schema(path) -> list[tuple]:
    with sqlite3.connect(path) as db:
        return sorted(db.execute("SELECT type, name, sql FROM sqlite_master"))


def make(
    path, script: str, rows: list[tuple[str, tuple]] = (), version: int = 0
) -> None:
    db = sqlite3.connect(path)
    db.executescript(script)
    for sql, args in rows:
        db.execute(sql, args)
    db.execute(f"PRAGMA user_version = {version}")
    db.commit()
    db.close()


SYNC_ROW = (
    "INSERT INTO syncs VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
    ("s1", "/tmp/s1", "r1", "active", None, 5, 1000, 0.0),
)
FILE_ROW = (
    "INSERT INTO files VALUES (?, ?, ?, ?, ?, ?)",
    ("s1", "f.txt", 3, A, A, 0o644),
)


def current_shape_script() -> str:
    adds = "".join(
        f"ALTER TABLE changes ADD COLUMN {c} {d};\n" for c, d in CHANGE_COLUMNS.items()
    )
    return SCHEMA + adds + "CREATE INDEX changes_open ON changes (session_id, state);\n"


def test_a_fresh_database_gets_the_current_shape_and_version(tmp_path):
    path = tmp_path / "journal.sqlite"
    st = Store(path, 1.0)
    assert st.load() == {}
    assert st.recorded == 0
    st.close()
    assert user_version(path) == VERSION == len(store_mod.MIGRATIONS)
    assert columns(path, "changes") == CURRENT_COLUMNS
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_the_oldest_shape_is_brought_to_the_current_one_keeping_its_rows(tmp_path):
    path = tmp_path / "journal.sqlite"
    old_change = (
        "INSERT INTO changes (session_id, origin, path, content_hash, is_deletion, base_iteration,"
        " recorded_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
        ("s1", "upstream", "f.txt", A, 0, 3, 1.0),
    )
    make(path, OLDEST, [SYNC_ROW, FILE_ROW, old_change])
    assert "state" not in columns(path, "changes")
    st = Store(path, 1.0)
    syncs = st.load()
    assert st.recorded == 1
    st.close()
    assert user_version(path) == VERSION
    assert columns(path, "changes") == CURRENT_COLUMNS
    with sqlite3.connect(path) as db:
        assert db.execute("SELECT state FROM changes").fetchall() == [("done",)]
    assert syncs["s1"].files == {"f.txt": FileRec(3, A, A, 0o644)}
    assert (syncs["s1"].last_seq, syncs["s1"].max_seen) == (5, 5)


def test_a_database_of_the_current_shape_without_a_version_is_only_given_one(tmp_path):
    path = tmp_path / "journal.sqlite"
    pending = (
        "INSERT INTO changes (session_id, origin, path, content_hash, is_deletion, base_iteration,"
        " recorded_at, state, size, permissions) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        ("s1", "local", "f.txt", B, 0, 3, 2.0, "pending", 9, 0o755),
    )
    make(path, current_shape_script(), [SYNC_ROW, FILE_ROW, pending])
    before = schema(path)
    st = Store(path, 1.0)
    syncs = st.load()
    st.close()
    assert user_version(path) == VERSION
    assert schema(path) == before  # nothing added twice, nothing changed
    [e] = syncs["s1"].entries.values()
    assert (e.path, e.hash, e.size, e.mode, e.state, e.base) == (
        "f.txt",
        B,
        9,
        0o755,
        "pending",
        3,
    )


def test_the_first_step_is_idempotent(tmp_path):
    path = tmp_path / "journal.sqlite"
    Store(path, 1.0).close()
    before = schema(path)
    with sqlite3.connect(path) as db:
        store_mod.MIGRATIONS[0](db)
    assert schema(path) == before


def test_a_database_from_a_newer_version_is_refused_and_left_as_it_is(tmp_path):
    path = tmp_path / "journal.sqlite"
    make(path, current_shape_script(), [SYNC_ROW], version=VERSION + 1)
    before = path.read_bytes()
    with pytest.raises(StoreTooNew, match=rf"schema version {VERSION + 1}, newer"):
        Store(path, 1.0)
    assert path.read_bytes() == before
    assert not (tmp_path / "journal.sqlite-wal").exists()
    assert user_version(path) == VERSION + 1


def test_records_are_saved_and_loaded_again(tmp_path):
    path = tmp_path / "journal.sqlite"
    st = Store(path, 1.0)
    s = Sync("s1", "/tmp/s1", "r1", "active", last_seq=4, last_sync_at=99)
    with st.db:
        st.save_sync(s)
        st.save_file("s1", "f.txt", FileRec(4, A, B, 0o755))
        st.save_file("s1", "gone.txt", FileRec(2, "", "", 0o644))
        st.save_conflict("s1", Conflict("f.txt", B, 4, A, "f (upstream 4).txt", 12.5))
        st.save_conflict("s1", Conflict("other.txt", B, 1, A, None, 1.0))
        st.delete_conflict("s1", "other.txt")
        sent = st.record(
            "s1", "local", "f.txt", B, False, "pending", base=4, size=3, mode=0o755
        )
        st.entry_state(sent, "sent", base=4)
        held = st.record("s1", "local", "g.txt", "", True, "pending", base=2)
        st.entry_state(held, "held", reason="conflict")
        done = st.record("s1", "local", "h.txt", A, False, "pending", base=1)
        st.entry_state(done, "accepted", iteration=5)
        st.record(
            "s1", "upstream", "f.txt", A, False, "applied", iteration=4, sequence=7
        )
        st.record_plain("s1", "upstream", "x.txt", A, False, 3)
        st.save_sync(Sync("s2", "/tmp/s2", "r2", "stopped"))
    assert st.recorded == 5
    st.close()

    st = Store(path, 1.0)
    syncs = st.load()
    assert st.recorded == 5
    assert set(syncs) == {"s1", "s2"}
    got = syncs["s1"]
    assert (
        got.local_dir,
        got.replica_id,
        got.state,
        got.last_seq,
        got.last_sync_at,
    ) == (
        "/tmp/s1",
        "r1",
        "active",
        4,
        99,
    )
    assert got.files == {
        "f.txt": FileRec(4, A, B, 0o755),
        "gone.txt": FileRec(2, "", "", 0o644),
    }
    assert got.conflicts == {
        "f.txt": Conflict("f.txt", B, 4, A, "f (upstream 4).txt", 12.5)
    }
    # sent and never answered: pending again (sent after a restart); accepted ones are
    # done
    assert [
        (e.seq, e.path, e.state, e.deletion, e.base) for e in got.entries.values()
    ] == [
        (sent, "f.txt", "pending", False, 4),
        (held, "g.txt", "held", True, 2),
    ]
    with st.db:
        st.forget_files("s1")
    assert st.load()["s1"].files == {} and st.load()["s1"].entries == {}
    st.close()
