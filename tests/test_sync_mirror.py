"""Local sync without a replication endpoint: the read-only mirror (docs/sync.md,
"Without a replication endpoint: the mirror").

Three layers: the mirror's decisions (pure functions, by tables); a replication Link in
this process against a real dev gateway in its reference profile (no /replicate), which
must switch to the mirror and hand up what a Link hands up; and the whole app, a real
folder and the same gateway: the workspace mirrored, live changes followed, local edits
kept here and never sent.
"""

from __future__ import annotations

import base64
import hashlib
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from apphelpers import App, InvokeError, free_port, wait_until
from gateway_helpers import Client
from synchelpers import new_session, status
from synchelpers import start as start_sync

from dim_actors.connection.mirror import (
    PACE_LIMIT,
    PACE_WINDOW_S,
    Known,
    ListingError,
    Offer,
    Pacer,
    Skip,
    Unhashed,
    decode_content,
    error_kind,
    fetch_requests,
    fold_renames,
    iteration_for,
    offer_from_content,
    plan_change,
    plan_listing,
)
from dim_actors.connection.replication import Link, endpoint_missing
from dim_actors.devgateway import BackgroundGateway
from dim_actors.devgateway.profile import REFERENCE
from dim_actors.devgateway.workspace import WorkspaceError
from dim_actors.messages import (
    ContentReady,
    FetchContent,
    ReplicationState,
    ReplicationUpdate,
    SendWriteBack,
    StartReplication,
    WriteBackItem,
    WriteBackOutcome,
)
from dim_actors.sync.status import MIRROR_NOTE

# s: how long to wait for a condition before calling it a failure (not how long it
# takes)
WAIT = 30.0


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


HA, HB, HC = sha(b"a"), sha(b"b"), sha(b"c")


# --- the decisions, by tables ---------------------------------------------------------


@pytest.mark.parametrize(
    "prev, given, h, expected",
    [
        (None, 7, HA, (7, False)),  # the gateway's iteration wins
        (Known(3, HA), None, HA, (3, False)),  # same content: same iteration
        (Known(3, HA, synthetic=True), None, HA, (3, True)),
        (
            Known(3, HA),
            None,
            HB,
            (4, True),
        ),  # other content: the next one, counted here
        (None, None, HA, (1, True)),
        (Known(5, ""), None, HA, (6, True)),  # back after a deletion
    ],
)
def test_iteration_for(prev, given, h, expected):
    assert iteration_for(prev, given, h) == expected


def _entry(
    path: Any, h: Any = None, iteration: Any = None, size: Any = 1, type_: Any = "file"
) -> dict:
    e = {
        "path": path,
        "name": str(path).rsplit("/", 1)[-1],
        "type": type_,
        "size": size,
    }
    if h is not None:
        e["hash"] = h
    if iteration is not None:
        e["iteration"] = iteration
    return e


LISTING_CASES = [
    # (name, prev, files, offers as (path, iteration, hash, synthetic), unhashed paths,
    # problems count)
    (
        "first listing",
        {},
        [_entry("a", HA, 2), _entry("d", type_="directory"), _entry("d/b", HB, 1)],
        [("a", 2, HA, False), ("d/b", 1, HB, False)],
        [],
        0,
    ),
    (
        "deleted while away",
        {"a": Known(2, HA), "gone": Known(4, HB), "dead": Known(5, "")},
        [_entry("a", HA, 2)],
        [("a", 2, HA, False), ("gone", 5, "", True)],
        [],
        0,
    ),
    (
        "no hash: read it",
        {},
        [_entry("a", None, 3), _entry("b", "not-a-hash", 1)],
        [],
        ["a", "b"],
        0,
    ),
    (
        "odd iterations are counted here",
        {"a": Known(4, HA, synthetic=True)},
        [_entry("a", HB, "7"), _entry("b", HB, True), _entry("c", HC, -1)],
        [("a", 5, HB, True), ("b", 1, HB, True), ("c", 1, HC, True)],
        [],
        0,
    ),
    (
        "odd entries are skipped, the rest kept",
        {},
        [
            "nope",
            {"type": "file"},
            _entry(5, HA),
            _entry("x\0y", HA),
            _entry("l", HA, 1, type_="symlink"),
            _entry("ok", HA, 1),
            _entry("ok", HB, 2),
        ],
        [("ok", 1, HA, False)],
        [],
        6,
    ),
    (
        "no type: a file",
        {},
        [{"path": "t", "hash": HC, "iteration": 9}],
        [("t", 9, HC, False)],
        [],
        0,
    ),
]


@pytest.mark.parametrize(
    "name, prev, files, offers, unhashed, problems",
    LISTING_CASES,
    ids=[c[0] for c in LISTING_CASES],
)
def test_plan_listing(name, prev, files, offers, unhashed, problems):
    plan = plan_listing(prev, files)
    assert [
        (o.path, o.known.iteration, o.known.hash, o.known.synthetic)
        for o in plan.offers
    ] == offers
    assert [u.path for u in plan.unhashed] == unhashed
    assert len(plan.problems) == problems, plan.problems


@pytest.mark.parametrize("files", [None, {"a": 1}, "a"])
def test_plan_listing_refuses_an_unreadable_listing(files):
    with pytest.raises(ListingError):
        plan_listing({"a": Known(1, HA)}, files)  # not "everything was deleted"


CHANGE_CASES = [
    # (name, prev, event, expected)
    (
        "a write",
        None,
        {"path": "a", "iteration": 1, "size": 1, "hash": HA},
        Offer("a", Known(1, HA, 1)),
    ),
    (
        "the next write",
        Known(1, HA),
        {"path": "a", "iteration": 2, "size": 1, "hash": HB},
        Offer("a", Known(2, HB, 1)),
    ),
    (
        "seen already",
        Known(2, HB),
        {"path": "a", "iteration": 2, "size": 1, "hash": HB},
        Skip("a: iteration 2 seen already", quiet=True),
    ),
    (
        "older than known",
        Known(5, HB),
        {"path": "a", "iteration": 3, "hash": HA},
        Skip("a: iteration 3 seen already", quiet=True),
    ),
    (
        "a deletion",
        Known(2, HB),
        {"path": "a", "iteration": 3, "size": 0, "hash": "", "deleted": True},
        Offer("a", Known(3, "")),
    ),
    (
        "a deletion without an iteration",
        Known(2, HB),
        {"path": "a", "deleted": True},
        Offer("a", Known(3, "", 0, True)),
    ),
    (
        "deleted already",
        Known(3, ""),
        {"path": "a", "deleted": True},
        Skip("a: deleted already", quiet=True),
    ),
    (
        "a rename's new half",
        None,
        {"path": "b", "iteration": 1, "size": 1, "hash": HA, "renamedFrom": "a"},
        Offer("b", Known(1, HA, 1), renamedFrom="a"),
    ),
    (
        "no hash: read it",
        Known(1, HA),
        {"path": "a", "iteration": 2, "hash": ""},
        Unhashed("a", 2),
    ),
    ("no hash, no iteration", None, {"path": "a", "renamedFrom": 7}, Unhashed("a")),
    (
        "no iteration: counted here",
        Known(4, HA, synthetic=True),
        {"path": "a", "hash": HB, "size": "big"},
        Offer("a", Known(5, HB, 0, True)),
    ),
    (
        "no iteration, same content",
        Known(4, HA, synthetic=True),
        {"path": "a", "hash": HA},
        Skip("a: unchanged", quiet=True),
    ),
    (
        "no path",
        None,
        {"iteration": 1, "hash": HA},
        Skip("a file_changed without a usable path ('None')"),
    ),
    (
        "a path that is no string",
        None,
        {"path": ["a"], "hash": HA},
        Skip("a file_changed without a usable path (\"['a']\")"),
    ),
]


@pytest.mark.parametrize(
    "name, prev, event, expected", CHANGE_CASES, ids=[c[0] for c in CHANGE_CASES]
)
def test_plan_change(name, prev, event, expected):
    assert plan_change(prev, event) == expected


def test_fold_renames():
    gone = Offer("old", Known(3, ""))
    made = Offer("new", Known(1, HA), renamedFrom="old")
    other = Offer("x", Known(2, HB))
    assert fold_renames([gone, other, made]) == [
        other,
        Offer("new", Known(1, HA), "old", renamedFromIteration=3),
    ]
    # the new half alone (its deletion came in an earlier batch), or a deletion alone:
    # as they are
    assert fold_renames([made]) == [made]
    assert fold_renames([gone, other]) == [gone, other]
    # a rename whose old path is written again after it is deleted: that deletion is not
    # the rename's
    again = Offer("old", Known(4, HC))
    assert fold_renames([gone, again, made]) == [gone, again, made]


@pytest.mark.parametrize(
    "prev, u, answered, data, expected",
    [
        (
            None,
            Unhashed("a"),
            4,
            b"hi",
            Offer("a", Known(4, sha(b"hi"), 2), inline=b"hi"),
        ),
        (
            None,
            Unhashed("a", 2),
            None,
            b"hi",
            Offer("a", Known(2, sha(b"hi"), 2), inline=b"hi"),
        ),
        (
            Known(2, HA, synthetic=True),
            Unhashed("a", renamedFrom="z"),
            "x",
            b"hi",
            Offer("a", Known(3, sha(b"hi"), 2, True), renamedFrom="z", inline=b"hi"),
        ),
        (
            None,
            Unhashed("big"),
            1,
            b"x" * 5000,
            Offer("big", Known(1, sha(b"x" * 5000), 5000)),
        ),
    ],
)
def test_offer_from_content(prev, u, answered, data, expected):
    assert offer_from_content(prev, u, answered, data) == expected


def test_fetch_requests():
    latest = {"a": Known(3, HA), "b": Known(2, HB), "c": Known(7, HC, synthetic=True)}

    def read(p):
        return {"type": "read_file", "sessionId": "s", "path": p}

    def at(p, i):
        return {
            "type": "file_at_iteration",
            "sessionId": "s",
            "path": p,
            "iteration": i,
        }

    assert fetch_requests("s", HA, latest, [("a", 3, False)]) == [read("a"), at("a", 3)]
    # b has moved on from HA: only its old iteration can give it
    assert fetch_requests("s", HA, latest, [("b", 1, False), ("a", 3, False)]) == [
        read("a"),
        at("a", 3),
        at("b", 1),
    ]
    # an iteration counted here means nothing to the gateway
    assert fetch_requests("s", HC, latest, [("c", 7, True)]) == [read("c")]
    assert fetch_requests("s", HC, {}, [("c", 6, True)]) == []
    assert fetch_requests("s", HA, latest, []) == []


@pytest.mark.parametrize(
    "content, encoding, expected",
    [
        ("héllo", "utf-8", "héllo".encode()),
        ("x", None, b"x"),
        ("x", "UTF8", b"x"),
        (base64.b64encode(bytes(range(256))).decode(), "base64", bytes(range(256))),
        ("not base64!", "base64", ValueError),
        ("x", "gzip", ValueError),
        (b"x", "utf-8", ValueError),
        (None, "utf-8", ValueError),
    ],
)
def test_decode_content(content, encoding, expected):
    if expected is ValueError:
        with pytest.raises(ValueError):
            decode_content(content, encoding)
    else:
        assert decode_content(content, encoding) == expected


@pytest.mark.parametrize(
    "code, kind",
    [
        ("SessionNotFound", "session_gone"),
        ("SESSION_NOT_FOUND", "session_gone"),
        ("FileNotFound", "not_found"),
        ("IterationNotFound", "not_found"),
        ("RATE_LIMITED", "rate_limited"),
        ("AUTH_FAILED", "auth_failed"),
        ("Unauthenticated", "auth_failed"),
        ("AUTH_RATE_LIMITED", "auth_limited"),
        ("InternalError", "other"),
        (None, "other"),
    ],
)
def test_error_kind(code, kind):
    assert error_kind(code) == kind


def test_pacer_keeps_under_the_limit_in_any_window():
    p = Pacer()
    t = 100.0
    for _ in range(PACE_LIMIT):  # a small workspace goes at once
        assert p.wait_s(t) == 0
        p.note(t)
        t += 0.01
    assert p.wait_s(t) == pytest.approx(100.0 + PACE_WINDOW_S - t)
    t = 100.0 + PACE_WINDOW_S + 0.001
    assert p.wait_s(t) == 0  # the first one has left the window
    # told RATE_LIMITED: wait as told, and spend less from then on
    p.refused(t, 2.0)
    assert p.wait_s(t) == pytest.approx(2.0) and p.limit < PACE_LIMIT


@pytest.mark.parametrize(
    "status, body, missing",
    [
        (404, b"Not Found\n", True),
        (404, None, True),
        (404, b"No such session\n", False),  # our dev gateway's: the endpoint is there
        (405, b"", True),
        (426, b"Upgrade Required", True),
        (400, None, True),
        (401, b"Bad or missing token\n", False),
        (429, None, False),
        (500, None, False),
        (503, None, False),
    ],
)
def test_endpoint_missing(status, body, missing):
    assert endpoint_missing(status, body) is missing


# --- a Link against a real gateway ----------------------------------------------------


class Controls:
    """What a Link hands up, in order, for a test to wait on (an Uplink stand-in, as in
    test_sync_replication.py)."""

    def __init__(self):
        self.items: list = []
        self.cond = threading.Condition()

    def put_control(self, msg) -> None:
        with self.cond:
            self.items.append(msg)
            self.cond.notify_all()

    def wait(
        self, predicate: Callable[[list], Any], what: str, timeout: float = WAIT
    ) -> Any:
        with self.cond:
            value = self.cond.wait_for(lambda: predicate(list(self.items)), timeout)
            if not value:
                raise AssertionError(
                    f"timed out waiting for {what}; last items: {self.items[-5:]}"
                )
            return value

    def states(self) -> list[tuple[str, bool]]:
        with self.cond:
            return [
                (m.state, m.readOnly)
                for m in self.items
                if isinstance(m, ReplicationState)
            ]

    def notes(self) -> list:
        with self.cond:
            return [
                n
                for m in self.items
                if isinstance(m, ReplicationUpdate)
                for n in m.notifications
            ]

    def ready(self) -> dict[str, Any]:
        with self.cond:
            return {
                c.contentHash: c
                for m in self.items
                if isinstance(m, ContentReady)
                for c in m.items
            }


def state_is(state: str, read_only: bool) -> Callable[[list], bool]:
    return lambda items: any(
        isinstance(m, ReplicationState) and m.state == state and m.readOnly is read_only
        for m in items
    )


def note_for(
    path: str, where: Callable[[Any], bool] = lambda n: True
) -> Callable[[list], Any]:
    def find(items):
        for m in items:
            if isinstance(m, ReplicationUpdate):
                for n in m.notifications:
                    if n.filepath == path and where(n):
                        return n
        return None

    return find


@pytest.fixture(scope="module")
def ref(tmp_path_factory):
    # the reference profile: no /replicate, no `authenticated` pushed; the gateway's
    # real rate limit
    with BackgroundGateway(
        profile=REFERENCE, data_dir=tmp_path_factory.mktemp("ref-gw")
    ) as g:
        yield g


def gw_session(gw: BackgroundGateway, token: str | None = None) -> str:
    with Client(gw.url, expect_authenticated=False) as c:
        if token:
            c.ok("authenticate", token=token)
        return c.new_session("coding-agent", join=False)


def agent_write(gw: BackgroundGateway, sid: str, path: str, data: bytes) -> None:
    gw.call(lambda g: g.sessions[sid].workspace.write(path, data))


def agent_delete(gw: BackgroundGateway, sid: str, path: str) -> None:
    gw.call(lambda g: g.sessions[sid].workspace.delete(path))


def gw_read(gw: BackgroundGateway, sid: str, path: str) -> bytes | None:
    async def read(g):
        try:
            return (await g.sessions[sid].workspace.read(path)).content
        except WorkspaceError:
            return None

    return gw.call(read)


def gw_iterations(gw: BackgroundGateway, sid: str, path: str) -> int:
    async def history(g):
        try:
            return len(await g.sessions[sid].workspace.history(path))
        except WorkspaceError:
            return 0

    return gw.call(history)


def start_link(
    gw: BackgroundGateway, sid: str, tmp_path: Path, token: str | None = None
) -> tuple[Link, Controls]:
    controls = Controls()
    link = Link(
        StartReplication(
            sessionId=sid,
            replicaId="r1",
            sinceSequence=0,
            spoolDir=str(tmp_path / "spool"),
        ),
        controls,
        lambda: (gw.url, token),
    )  # type: ignore[arg-type]
    link.start()
    return link, controls


def test_link_mirrors_a_gateway_without_replicate(ref, tmp_path):
    sid = gw_session(ref)
    files = {
        "a.txt": b"hello",
        "dir/b.bin": bytes(range(256)) * 3,
        "big.txt": b"line\n" * 300_000,
    }
    for path, data in files.items():
        agent_write(ref, sid, path, data)
    link, controls = start_link(ref, sid, tmp_path)
    try:
        controls.wait(state_is("connected", True), "the mirror connected")
        first = controls.wait(
            lambda items: next(
                (m for m in items if isinstance(m, ReplicationUpdate)), None
            ),
            "the first update",
        )
        # the journal re-offers everything, skipping by hash what it has
        assert first.fullResync
        assert {
            n.filepath: (n.contentHash, n.iteration, n.size, n.isDeletion)
            for n in first.notifications
        } == {p: (sha(d), 1, len(d), False) for p, d in files.items()}
        assert len(
            {n.sequence for n in first.notifications}
        ) == 3 and first.sequence == max(n.sequence for n in first.notifications)
        assert ("refused", False) not in controls.states()

        # content, as the materializer asks for it: read, verified, spooled
        link.put(FetchContent(sessionId=sid, hashes=[sha(d) for d in files.values()]))
        controls.wait(lambda items: len(controls.ready()) == 3, "the content")
        for data in files.values():
            item = controls.ready()[sha(data)]
            assert item.error == "" and Path(item.spoolPath).read_bytes() == data

        # live: a write, a deletion, a rename (one notification, as /replicate sends it)
        agent_write(ref, sid, "a.txt", b"hello again")
        n = controls.wait(
            note_for("a.txt", lambda n: n.iteration == 2), "the live write"
        )
        assert n.contentHash == sha(b"hello again") and n.sequence > first.sequence
        agent_delete(ref, sid, "dir/b.bin")
        n = controls.wait(note_for("dir/b.bin", lambda n: n.isDeletion), "the deletion")
        assert (n.iteration, n.contentHash) == (2, "")
        ref.call(lambda g: g.sessions[sid].workspace.rename("a.txt", "c.txt"))
        n = controls.wait(note_for("c.txt"), "the rename")
        assert (n.renamedFrom, n.renamedFromIteration, n.contentHash) == (
            "a.txt",
            3,
            sha(b"hello again"),
        )

        # nothing is written upstream: a write-back is answered here, kept pending by
        # the journal
        link.put(
            SendWriteBack(
                sessionId=sid,
                entries=[
                    WriteBackItem(localSeq=9, path="x", contentHash=HA, baseIteration=0)
                ],
            )
        )
        out = controls.wait(
            lambda items: next(
                (m for m in items if isinstance(m, WriteBackOutcome)), None
            ),
            "the write-back's answer",
        )
        assert [(r.localSeq, r.reason) for r in out.rejected] == [
            (9, "no_link")
        ] and not out.accepted
        assert gw_read(ref, sid, "x") is None
        assert link.mirror is not None and link.mirror.rate_limited == 0
    finally:
        link.stop()
    assert controls.states()[-1] == ("stopped", True)
    link.reader.join(WAIT)
    assert not link.reader.is_alive()


def test_link_stays_two_way_where_replicate_exists_and_an_unknown_session_is_refused(
    tmp_path,
):
    with BackgroundGateway(data_dir=tmp_path / "gw") as dev:
        sid = gw_session(dev)
        agent_write(dev, sid, "a.txt", b"hello")
        link, controls = start_link(dev, sid, tmp_path / "one")
        try:
            controls.wait(state_is("connected", False), "the two-way link")
            controls.wait(note_for("a.txt"), "the catch-up")
            assert link.mirror is None and all(not ro for _, ro in controls.states())
        finally:
            link.stop()
        # our dev gateway's "No such session" 404 is a refusal, not a missing endpoint
        gone, controls = start_link(dev, "no-such-session", tmp_path / "two")
        try:
            st = controls.wait(
                lambda items: next(
                    (
                        m
                        for m in items
                        if isinstance(m, ReplicationState) and m.state == "refused"
                    ),
                    None,
                ),
                "the refusal",
            )
            assert not st.readOnly and gone.mirror is None
        finally:
            gone.stop()


def test_mirror_of_a_session_the_gateway_no_longer_has_is_refused_in_plain_words(
    ref, tmp_path
):
    link, controls = start_link(ref, "no-such-session", tmp_path)
    try:
        st = controls.wait(
            lambda items: next(
                (
                    m
                    for m in items
                    if isinstance(m, ReplicationState) and m.state == "refused"
                ),
                None,
            ),
            "the refusal",
        )
        assert (
            st.readOnly
            and "no-such-session no longer exists on the gateway" in st.detail
        )
    finally:
        link.stop()


def test_mirror_authenticates_when_the_gateway_requires_it(tmp_path):
    with BackgroundGateway(
        profile=REFERENCE, token="sekrit", data_dir=tmp_path / "gw"
    ) as g:
        sid = gw_session(g, token="sekrit")
        agent_write(g, sid, "a.txt", b"hello")
        link, controls = start_link(g, sid, tmp_path / "good", token="sekrit")
        try:
            controls.wait(note_for("a.txt"), "the listing")
            controls.wait(state_is("connected", True), "the mirror connected")
        finally:
            link.stop()
        bad, controls = start_link(g, sid, tmp_path / "bad", token="nope")
        try:
            st = controls.wait(
                lambda items: next(
                    (
                        m
                        for m in items
                        if isinstance(m, ReplicationState)
                        and m.state == "refused"
                        and m.readOnly
                    ),
                    None,
                ),
                "the refusal",
            )
            assert st.detail == "the gateway refused the token"
            assert not any(isinstance(m, ReplicationUpdate) for m in controls.items)
        finally:
            bad.stop()


def test_mirror_paces_its_requests_under_the_gateways_rate_limit(ref, tmp_path):
    """60 files to read, against the gateway's own limit of 60 messages in 10 s per
    connection: the mirror spends at most 50 in any 10 s, so it is never refused, and
    every file arrives."""
    sid = gw_session(ref)
    files = {f"f/{i:03}.txt": f"file {i}\n".encode() * 50 for i in range(60)}
    for path, data in files.items():
        agent_write(ref, sid, path, data)
    link, controls = start_link(ref, sid, tmp_path)
    try:
        controls.wait(lambda items: len(controls.notes()) >= 60, "the listing")
        began = time.monotonic()
        link.put(FetchContent(sessionId=sid, hashes=[sha(d) for d in files.values()]))
        controls.wait(
            lambda items: len(controls.ready()) == 60,
            "every file's content",
            timeout=60,
        )
        took = time.monotonic() - began
        assert all(c.error == "" for c in controls.ready().values())
        m = link.mirror
        assert m is not None and m.rate_limited == 0, (
            "the pacing let the gateway refuse us"
        )
        print(
            f"\nmirror: 60 files read in {took:.1f} s ({m.requests} requests on the connection)"
        )
    finally:
        link.stop()


def test_mirror_slows_down_for_a_gateway_with_a_lower_limit(tmp_path):
    with BackgroundGateway(
        profile=REFERENCE, rate_limit=20, rate_window_ms=4000, data_dir=tmp_path / "gw"
    ) as g:
        sid = gw_session(g)
        files = {f"{i:02}.txt": f"file {i}".encode() for i in range(30)}
        for path, data in files.items():
            agent_write(g, sid, path, data)
        link, controls = start_link(g, sid, tmp_path)
        try:
            controls.wait(lambda items: len(controls.notes()) >= 30, "the listing")
            link.put(
                FetchContent(sessionId=sid, hashes=[sha(d) for d in files.values()])
            )
            controls.wait(
                lambda items: len(controls.ready()) == 30,
                "every file's content",
                timeout=60,
            )
            assert all(c.error == "" for c in controls.ready().values())
            assert link.mirror is not None and link.mirror.rate_limited >= 1
        finally:
            link.stop()


# --- the whole app --------------------------------------------------------------------


@pytest.fixture(scope="module")
def mapp(ref, tmp_path_factory):
    a = App(tmp_path_factory.mktemp("dim-home"), ["--gateway", ref.url])
    a.wait_connected()
    # The app's own connection joins this session first, and every test's after it: the
    # mirror's connection is then the only one joined to a test's session alone
    # (cut_off_mirror).
    sid = a.invoke("create_session", agentType="echo")["session"]["id"]
    a.invoke("join_session", sessionId=sid)
    yield a
    a.stop()


def start(app: App, sid: str, folder: Path) -> dict:
    """start_sync on a gateway without /replicate: its status once the mirror is up."""
    start_sync(app, sid, folder)
    return wait_until(
        lambda: (
            (st := status(app, sid))["link"] == "connected"
            and st["mode"] == "mirror"
            and st
        ),
        what="the mirror connected",
    )


def has(folder: Path, path: str, data: bytes) -> bool:
    p = folder / path
    return p.is_file() and p.read_bytes() == data


def cut_off_mirror(
    gw: BackgroundGateway, sid: str, meanwhile: Callable[[Any], Any]
) -> None:
    """End the mirror's connection so that what `meanwhile` does upstream never reaches
    it as an event: nothing more is sent to it, `meanwhile` runs, then its socket is
    cut. Only the next listing can tell it."""

    async def run(g):
        mirrors = [c for c in g.connections if c.sessions == {sid}]
        for c in mirrors:
            c.outbox.close()
        await meanwhile(g)
        for c in mirrors:
            c.ws.transport.abort()
        return len(mirrors)

    assert gw.call(run) == 1


def test_the_workspace_is_mirrored_and_follows_the_agent(mapp, ref, tmp_path):
    folder = tmp_path / "sync"
    sid = new_session(
        mapp, "/write README.md hello\n/write src/app.py print(1)\n/write old.txt x"
    )
    wait_until(lambda: gw_read(ref, sid, "old.txt") == b"x", what="the agent's files")
    st = start(mapp, sid, folder)
    assert st["modeNote"] == MIRROR_NOTE
    wait_until(
        lambda: (
            has(folder, "README.md", b"hello")
            and has(folder, "src/app.py", b"print(1)")
            and has(folder, "old.txt", b"x")
        ),
        what="the workspace on disk",
    )
    assert (folder / "src/app.py").stat().st_mode & 0o777 == 0o644

    # live: writes (text, binary, over 1 MiB), a change, a deletion, a rename
    blob, big = bytes(range(256)) * 4, b"0123456789abcdef" * 100_000
    agent_write(ref, sid, "src/new.py", b"live")
    agent_write(ref, sid, "bin/blob", blob)
    agent_write(ref, sid, "big.txt", big)
    agent_write(ref, sid, "README.md", b"hello again")
    wait_until(
        lambda: (
            has(folder, "src/new.py", b"live")
            and has(folder, "bin/blob", blob)
            and has(folder, "big.txt", big)
            and has(folder, "README.md", b"hello again")
        ),
        what="the live writes",
    )
    agent_delete(ref, sid, "old.txt")
    wait_until(lambda: not (folder / "old.txt").exists(), what="the deletion")
    ref.call(lambda g: g.sessions[sid].workspace.rename("src/new.py", "src/renamed.py"))
    wait_until(
        lambda: (
            has(folder, "src/renamed.py", b"live")
            and not (folder / "src/new.py").exists()
        ),
        what="the rename",
    )
    st = wait_until(
        lambda: (s := status(mapp, sid))["filesTracked"] == 5 and s,
        what="5 files tracked",
    )
    assert (
        st["state"],
        st["mode"],
        st["pendingWrites"],
        st["conflicts"],
        st["error"],
    ) == ("active", "mirror", 0, [], None)
    assert st["stats"]["echoesLeaked"] == 0 and not [
        i for i in st["incidents"] if i["kind"] == "full_resync"
    ]


def test_local_edits_stay_local_and_an_upstream_change_goes_beside_them(
    mapp, ref, tmp_path
):
    folder = tmp_path / "sync"
    sid = new_session(
        mapp, "/write a.txt agent v1\n/write keep.txt keep\n/write gone.txt bye"
    )
    wait_until(
        lambda: gw_read(ref, sid, "gone.txt") == b"bye", what="the agent's files"
    )
    start(mapp, sid, folder)
    wait_until(
        lambda: (
            has(folder, "a.txt", b"agent v1")
            and has(folder, "gone.txt", b"bye")
            and has(folder, "keep.txt", b"keep")
        ),
        what="the workspace on disk",
    )

    (folder / "a.txt").write_text("my edit")
    (folder / "mine.txt").write_text("only here")
    (folder / "gone.txt").unlink()
    st = wait_until(
        lambda: (s := status(mapp, sid))["pendingWrites"] == 3 and s,
        what="3 local edits journaled",
    )
    assert st["localEdits"] == [
        {"path": "a.txt", "deleted": False},
        {"path": "gone.txt", "deleted": True},
        {"path": "mine.txt", "deleted": False},
    ]

    # upstream moves on under the local edit: its version goes beside it; the local file
    # stays
    agent_write(ref, sid, "a.txt", b"agent v2")
    wait_until(
        lambda: has(folder, "a.upstream-2.txt", b"agent v2"),
        what="the upstream copy beside the edit",
    )
    assert (folder / "a.txt").read_text() == "my edit"
    st = wait_until(
        lambda: (s := status(mapp, sid))["conflicts"] and s, what="the conflict"
    )
    assert [(c["path"], c["upstream"], c["local"]) for c in st["conflicts"]] == [
        ("a.txt", "agent v2", "my edit")
    ]
    assert (st["pendingWrites"], st["heldWrites"], st["mode"]) == (2, 1, "mirror")
    # a later agent write reaches the folder (the link is alive, ticks have passed), and
    # still nothing local has gone up: upstream is as the agent left it, visible with
    # read_file
    agent_write(ref, sid, "later.txt", b"later")
    wait_until(lambda: has(folder, "later.txt", b"later"), what="a later agent write")
    assert (
        mapp.invoke("read_file", sessionId=sid, path="a.txt")["content"] == "agent v2"
    )
    assert mapp.invoke("read_file", sessionId=sid, path="gone.txt")["content"] == "bye"
    with pytest.raises(InvokeError):
        mapp.invoke("read_file", sessionId=sid, path="mine.txt")
    assert (
        len(mapp.invoke("file_history", sessionId=sid, path="a.txt")["iterations"]) == 2
    )
    assert (
        gw_iterations(ref, sid, "gone.txt") == 1
        and status(mapp, sid)["stats"]["writeBacksAccepted"] == 0
    )


def test_deletions_while_disconnected_or_stopped_are_found(mapp, ref, tmp_path):
    folder = tmp_path / "sync"
    sid = new_session(mapp, "/write a.txt a\n/write b.txt b\n/write c.txt c")
    wait_until(lambda: gw_read(ref, sid, "c.txt") == b"c", what="the agent's files")
    start(mapp, sid, folder)
    wait_until(
        lambda: all((folder / n).is_file() for n in ("a.txt", "b.txt", "c.txt")),
        what="the files on disk",
    )

    # the mirror's connection is cut; a.txt is deleted meanwhile: the next listing finds
    # it gone
    cut_off_mirror(ref, sid, lambda g: g.sessions[sid].workspace.delete("a.txt"))
    wait_until(
        lambda: not (folder / "a.txt").exists(),
        what="the deletion found by the listing",
    )
    # stopped, b.txt deleted upstream, started again: the last listing, kept on disk,
    # tells
    mapp.invoke("stop_sync", sessionId=sid)
    agent_delete(ref, sid, "b.txt")
    start(mapp, sid, folder)
    wait_until(
        lambda: not (folder / "b.txt").exists(), what="the deletion made while stopped"
    )
    assert (folder / "c.txt").read_text() == "c"
    assert status(mapp, sid)["filesTracked"] == 1


def test_the_sync_panel_says_mirror_and_marks_local_edits(mapp, ref, browser, tmp_path):
    from playwright.sync_api import expect

    folder = tmp_path / "sync"
    sid = new_session(mapp, "/write notes.md hello")
    wait_until(
        lambda: gw_read(ref, sid, "notes.md") == b"hello", what="the agent's file"
    )
    start(mapp, sid, folder)
    wait_until(lambda: has(folder, "notes.md", b"hello"), what="the file on disk")
    (folder / "notes.md").write_text("my notes")
    wait_until(
        lambda: status(mapp, sid)["pendingWrites"] == 1, what="the local edit journaled"
    )

    context = browser.new_context(viewport={"width": 1280, "height": 800})
    try:
        page = context.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto(mapp.runtime["uiUrl"])
        expect(page.locator("body[data-ready='1']")).to_have_count(1)
        page.locator(f"[data-testid='session-item'][data-session-id='{sid}']").click()
        page.get_by_test_id("side-tab-sync").click()
        panel = page.get_by_test_id("sync-panel")
        expect(panel.get_by_test_id("sync-mode")).to_have_text(MIRROR_NOTE)
        edit = panel.locator("[data-testid='sync-local-edit'][data-path='notes.md']")
        expect(edit).to_contain_text("kept locally, not sent")
        expect(panel.get_by_test_id("sync-counts")).to_contain_text(
            "1 kept locally, not sent"
        )
        assert errors == []
    finally:
        context.close()


def test_two_way_sync_is_unchanged_where_replicate_exists(tmp_path):
    with BackgroundGateway(rate_limit=100_000, data_dir=tmp_path / "gw") as dev:
        (tmp_path / "home").mkdir()
        a = App(tmp_path / "home", ["--gateway", dev.url])
        try:
            a.wait_connected()
            sid = new_session(a, "/write a.txt hello")
            wait_until(
                lambda: gw_read(dev, sid, "a.txt") == b"hello", what="the agent's file"
            )
            folder = tmp_path / "sync"
            a.invoke("start_sync", sessionId=sid, localDir=str(folder))
            wait_until(lambda: has(folder, "a.txt", b"hello"), what="the file on disk")
            (folder / "a.txt").write_text("mine")
            wait_until(
                lambda: gw_read(dev, sid, "a.txt") == b"mine",
                what="the local edit upstream",
            )
            st = status(a, sid)
            assert (st["mode"], st["modeNote"], st["link"]) == (
                "two-way",
                None,
                "connected",
            )
        finally:
            a.stop()


def test_a_gateway_that_gains_replicate_turns_the_mirror_two_way(tmp_path):
    """The same gateway (same address, same data) restarted with /replicate: the
    mirror's next reconnect finds the endpoint, the sync goes two-way, and the local
    edit kept meanwhile is sent, based on the iteration it was made on."""
    port, data = free_port(), tmp_path / "gw"
    (tmp_path / "home").mkdir()
    ref = BackgroundGateway(profile=REFERENCE, port=port, data_dir=data).start()
    a = App(tmp_path / "home", ["--gateway", ref.url])
    try:
        a.wait_connected()
        sid = new_session(a, "/write a.txt agent")
        wait_until(
            lambda: gw_read(ref, sid, "a.txt") == b"agent", what="the agent's file"
        )
        folder = tmp_path / "sync"
        start(a, sid, folder)
        wait_until(lambda: has(folder, "a.txt", b"agent"), what="the file on disk")
        (folder / "a.txt").write_text("mine")
        wait_until(
            lambda: (
                status(a, sid)["localEdits"] == [{"path": "a.txt", "deleted": False}]
            ),
            what="the local edit kept",
        )
        ref.stop()
        with BackgroundGateway(port=port, data_dir=data) as dev:
            st = wait_until(
                lambda: (
                    (s := status(a, sid))["mode"] == "two-way"
                    and s["link"] == "connected"
                    and s
                ),
                what="the two-way link",
            )
            assert st["modeNote"] is None
            wait_until(
                lambda: gw_read(dev, sid, "a.txt") == b"mine",
                what="the kept edit upstream",
            )
            assert gw_iterations(dev, sid, "a.txt") == 2
            wait_until(
                lambda: (
                    (s := status(a, sid))["pendingWrites"] == 0 and not s["localEdits"]
                ),
                what="nothing left pending",
            )
            assert (folder / "a.txt").read_text() == "mine" and status(a, sid)[
                "conflicts"
            ] == []
    finally:
        a.stop()
        ref.stop()
