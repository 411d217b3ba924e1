"""The embedded dev gateway as the app starts it: a real child process on a real port,
which wants its per-launch token, refuses foreign browser origins and other local users,
and comes back on the same port with the same sessions after a kill -9."""

from __future__ import annotations

import errno
import os
import shutil
import signal
import socket
import subprocess
import textwrap
import urllib.parse
from pathlib import Path

import pytest
import websocket
from apphelpers import App, wait_until
from gateway_helpers import Client
from stopchecks import gateway_pid, gone

from dim_actors.app.embedded_gateway import MAX_DELAY_S, EmbeddedGateway, restart_delay
from dim_actors.cli.dimctl import embedded_gateway_lines
from dim_actors.devgateway.cli import parse_args, token_from_args
from dim_actors.devgateway.limits import AuthLimiter, check_token
from dim_actors.devgateway.server import origin_allowed

WAIT = 60.0


@pytest.fixture
def gateway(tmp_path):
    gw = EmbeddedGateway(tmp_path / "gateway", tmp_path / "gateway.log")
    gw.start()
    yield gw
    gw.stop()


def authenticated_client(gw: EmbeddedGateway) -> Client:
    c = Client(gw.url)
    assert c.welcome["requiresAuth"] is True
    assert c.ok("authenticate", token=gw.token)["type"] == "authenticated"
    return c


def test_a_client_without_the_launch_token_gets_nothing(gateway):
    with Client(gateway.url) as c:
        assert c.welcome["requiresAuth"] is True
        assert c.request("list_sessions")["code"] == "Unauthenticated"
        assert c.request("authenticate", token="guess")["code"] == "AUTH_FAILED"
        assert c.request("list_sessions")["code"] == "Unauthenticated"
    with authenticated_client(gateway) as c:
        assert c.ok("list_sessions")["type"] == "session_list"
    # The token is on no command line (ps shows those to every user), only in its
    # environment.
    cmdline = Path(f"/proc/{gateway.proc.pid}/cmdline").read_bytes()
    assert gateway.token.encode() not in cmdline and b"--token" not in cmdline


def test_failed_guesses_do_not_lock_the_app_out(gateway):
    """Every local user shares 127.0.0.1: failing on purpose must not keep the app from
    its gateway."""
    with Client(gateway.url) as c:
        codes = [
            c.request("authenticate", token=f"guess-{i}")["code"] for i in range(7)
        ]
    assert codes[:5] == ["AUTH_FAILED"] * 5 and set(codes[5:]) == {
        "AUTH_RATE_LIMITED"
    }  # guessing is slowed
    with authenticated_client(gateway) as c:  # and the right token still passes
        assert c.ok("list_sessions")["type"] == "session_list"


@pytest.mark.parametrize(
    "candidate, spare, locked, expected",
    [
        (
            "right",
            True,
            True,
            (True, 0),
        ),  # the embedded gateway: the right token always passes
        (
            "right",
            False,
            True,
            (True, 60000),
        ),  # the reference gateway's rule: locked out is locked out
        ("wrong", True, True, (False, 60000)),
        ("wrong", True, False, (False, 0)),
        ("right", False, False, (True, 0)),
    ],
)
def test_check_token(candidate, spare, locked, expected):
    limiter = AuthLimiter(max_failures=1, window=60.0)
    if locked:
        limiter.failed("127.0.0.1")
    valid, wait_ms = check_token("right", candidate, limiter, "127.0.0.1", spare)
    assert (valid, wait_ms > 0) == (expected[0], expected[1] > 0)


def test_a_browser_page_from_elsewhere_is_refused(gateway):
    for url in (
        gateway.url,
        gateway.url.replace("/ws", "/replicate?sessionId=s&replicaId=r"),
    ):
        with pytest.raises(websocket.WebSocketBadStatusException) as refused:
            websocket.create_connection(url, timeout=WAIT, origin="http://evil.example")
        assert refused.value.status_code == 403
    # DNS rebinding: a foreign name for the loopback address is still a foreign origin.
    port = gateway.port
    with pytest.raises(websocket.WebSocketBadStatusException):
        websocket.create_connection(
            gateway.url, timeout=WAIT, origin=f"http://rebind.example:{port}"
        )
    # A program sending its own loopback origin (websocket-client's default) is fine.
    ws = websocket.create_connection(gateway.url, timeout=WAIT)
    assert '"welcome"' in ws.recv()
    ws.close()


# Run as nobody by the system's Python (the venv's lives under /root, closed to nobody),
# so with no websocket library: the upgrade and the frames by hand.
SYSTEM_PYTHON = shutil.which("python3", path="/usr/bin:/bin") or "/usr/bin/python3"
NOBODY_SCRIPT = textwrap.dedent("""
    import base64, json, os, socket, sys
    from urllib.parse import urlsplit
    url, pid, token = sys.argv[1], sys.argv[2], sys.argv[3]
    for name in ("cmdline", "environ"):
        try:
            leaked = token.encode() in open(f"/proc/{pid}/{name}", "rb").read()
            print(f"read {name}: token {'found' if leaked else 'absent'}")
        except OSError as e:
            print(f"read {name}: {type(e).__name__}")
    u = urlsplit(url)
    s = socket.create_connection((u.hostname, u.port), timeout=30)
    key = base64.b64encode(os.urandom(16)).decode()
    s.sendall((f"GET {u.path} HTTP/1.1\\r\\nHost: {u.netloc}\\r\\n"
               "Upgrade: websocket\\r\\nConnection: Upgrade\\r\\n"
               f"Sec-WebSocket-Key: {key}\\r\\nSec-WebSocket-Version: 13\\r\\n\\r\\n").encode())
    f = s.makefile("rb")
    print("status", f.readline().split()[1].decode())
    while f.readline() not in (b"\\r\\n", b""):
        pass
    def recv():
        b0, b1 = f.read(2)
        n = b1 & 127
        if n == 126:
            n = int.from_bytes(f.read(2), "big")
        elif n == 127:
            n = int.from_bytes(f.read(8), "big")
        return json.loads(f.read(n))
    def send(obj):
        data, mask = json.dumps(obj).encode(), os.urandom(4)
        assert len(data) < 126
        masked = bytes(b ^ mask[i % 4] for i, b in enumerate(data))
        s.sendall(bytes([0x81, 0x80 | len(data)]) + mask + masked)
    send({"type": "list_sessions"})
    for _ in range(4):
        ev = recv()
        print("got", ev["type"], ev.get("code", ""))
        if ev["type"] in ("error", "session_list"):
            break
""")


def test_another_local_user_is_refused(gateway, tmp_path):
    with authenticated_client(gateway) as owner:
        owner.new_session(name="private")
    out = subprocess.run(
        [
            SYSTEM_PYTHON,
            "-I",
            "-c",
            NOBODY_SCRIPT,
            gateway.url,
            str(gateway.proc.pid),
            gateway.token,
        ],
        user=65534,
        group=65534,
        extra_groups=[],
        cwd="/",
        capture_output=True,
        text=True,
        timeout=WAIT,
    )
    assert out.returncode == 0, out.stderr
    assert "status 101" in out.stdout and "read cmdline: token absent" in out.stdout
    assert "read environ: PermissionError" in out.stdout
    assert (
        "got error Unauthenticated" in out.stdout and "session_list" not in out.stdout
    ), out.stdout


def test_kill_9_restarts_it_on_the_same_url_with_its_sessions(gateway):
    url, first = gateway.url, gateway.proc.pid
    with authenticated_client(gateway) as c:
        sid = c.new_session(name="kept")
        c.ok("list_sessions")  # a read: everything before it is committed
    os.kill(first, signal.SIGKILL)
    wait_until(
        lambda: gateway.state().restarts == 1 and gateway.state().state == "running",
        WAIT,
        what="the watcher to restart the gateway",
    )
    state = gateway.state()
    assert gateway.url == url and state.pid not in (None, first)
    assert state.lastExitCode == -signal.SIGKILL
    with authenticated_client(gateway) as c:  # the same token still opens it
        assert sid in [s["id"] for s in c.ok("list_sessions")["sessions"]]
    assert "exited unexpectedly" in state.lastError


def test_it_gives_up_after_quick_failures(tmp_path, monkeypatch):
    from dim_actors.app import embedded_gateway

    # the real backoff, shortened
    monkeypatch.setattr(embedded_gateway, "FIRST_DELAY_S", 0.05)
    monkeypatch.setattr(embedded_gateway, "MAX_FAST_EXITS", 2)
    gw = EmbeddedGateway(tmp_path / "gateway", tmp_path / "gateway.log")
    gw.start()
    try:
        # Its store becomes unopenable: every restart exits during its start.
        (tmp_path / "gateway").rename(tmp_path / "elsewhere")
        (tmp_path / "gateway" / "gateway.db").mkdir(parents=True)
        os.kill(gw.proc.pid, signal.SIGKILL)
        wait_until(
            lambda: gw.state().state == "failed", WAIT, what="the watcher to give up"
        )
        st = gw.state()
        assert (
            st.restarts == 0 and st.pid is None and "not restarting it" in st.lastError
        )
        assert not gw._watcher.is_alive()
    finally:
        gw.stop()


def test_stop_is_not_taken_for_a_crash(tmp_path):
    gw = EmbeddedGateway(tmp_path / "gateway", tmp_path / "gateway.log")
    gw.start()
    gw.stop()
    assert gw.proc.poll() is not None and not gw._watcher.is_alive()
    st = gw.state()
    assert (st.state, st.restarts, st.pid) == ("stopped", 0, None)
    with pytest.raises(OSError):
        websocket.create_connection(gw.url, timeout=5)


@pytest.mark.parametrize(
    "exits, expected",
    [
        ([100.0], 0.5),
        ([99.0, 100.0], 1.0),
        ([97.0, 98.0, 99.0, 100.0], 4.0),
        (
            [10.0, 20.0, 100.0],
            0.5,
        ),  # the older exits are out of the window: a fresh start
        ([96.0, 97.0, 98.0, 99.0, 100.0], 8.0),
        (
            [95.0, 96.0, 97.0, 98.0, 99.0, 100.0],
            None,
        ),  # too many within a minute: give up
    ],
)
def test_restart_delay(exits, expected):
    assert restart_delay(exits, 100.0) == expected
    assert expected is None or expected <= MAX_DELAY_S


@pytest.mark.parametrize(
    "origin, ok",
    [
        ("http://127.0.0.1:8080", True),
        ("http://localhost:8080", True),
        ("http://[::1]:8080", True),
        ("http://127.0.0.1:8080/", True),
        ("http://127.0.0.1:9999", False),  # another local server's page (the UI, say)
        ("http://127.0.0.1", False),
        ("https://127.0.0.1:8080", False),
        ("http://evil.example:8080", False),
        ("http://127.0.0.1.evil.example:8080", False),
        ("null", False),
        ("http://user@127.0.0.1:8080", False),
        ("http://127.0.0.1:99999", False),
        ("http://localhost:3000", False),
    ],
)
def test_origin_allowed(origin, ok):
    assert origin_allowed(origin, 8080) is ok


def test_an_origin_can_be_allowed_by_name():
    assert origin_allowed(
        "http://localhost:3000/", 8080, frozenset({"http://localhost:3000"})
    )


def test_token_from_the_environment_never_falls_back_to_none():
    env = {"T": "abc", "OTHER": "x"}
    assert token_from_args(parse_args(["--require-token-env", "T"]), env) == "abc"
    assert env == {"OTHER": "x"}  # taken out: nothing the gateway starts inherits it
    with pytest.raises(SystemExit):
        token_from_args(parse_args(["--require-token-env", "T"]), {})
    # standalone: dev mode, as before
    assert token_from_args(parse_args([]), {}) is None
    assert token_from_args(parse_args(["--token", "x"]), {}) == "x"


def test_the_app_brings_its_gateway_back_and_says_so(dim_home):
    """kill -9 of the embedded gateway under a running app: a new one on the same
    address, the app connected to it again, and `dimctl status` telling the restart."""
    app = App(dim_home)
    try:
        app.wait_connected()
        sid = app.invoke("create_session", agentType="echo")["session"]["id"]
        pid = gateway_pid(app)
        os.kill(pid, signal.SIGKILL)
        wait_until(lambda: gone(pid), 30, what="the gateway process to end")
        # While no gateway runs, its port is still the app's: nothing else can listen
        # there and be sent the app's token when it reconnects.
        port = urllib.parse.urlsplit(app.runtime["gatewayUrl"]).port
        squatter = socket.socket()
        squatter.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        with squatter, pytest.raises(OSError) as taken:
            squatter.bind(("127.0.0.1", port))
        assert taken.value.errno == errno.EADDRINUSE

        def back() -> bool:
            out = app.dimctl("status")
            return (
                out.returncode == 0
                and "embedded gateway: running, restarted 1 times, last exit code -9"
                in out.stdout
            )

        wait_until(back, 60, what="dimctl status to tell the restarted gateway")
        app.wait_connected()
        assert sid in {
            s["id"] for s in app.invoke("list_sessions")["sessions"]
        }  # its sessions kept
    finally:
        app.stop()


@pytest.mark.parametrize(
    "state, lines",
    [
        (None, []),
        ({"state": "running", "restarts": 0, "lastExitCode": None}, []),
        (
            {"state": "running", "restarts": 2, "lastExitCode": -9},
            ["embedded gateway: running, restarted 2 times, last exit code -9"],
        ),
        (
            {
                "state": "failed",
                "restarts": 5,
                "lastExitCode": 1,
                "lastError": "exited 6 times in a minute",
            },
            [
                "embedded gateway: failed, restarted 5 times, last exit code 1: "
                "exited 6 times in a minute"
            ],
        ),
    ],
)
def test_embedded_gateway_lines(state, lines):
    assert embedded_gateway_lines(state) == lines
