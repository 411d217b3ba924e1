"""A small blocking client for tests that talk to a dev gateway over a real socket.

Every wait is a receive with a deadline: nothing sleeps and hopes.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

import websocket

from dim_actors.wire.protocol import RESPONSES, build_client_message

Event = dict[str, Any]
Match = Callable[[Event], bool]


class GatewayTimeout(AssertionError):
    pass


def is_type(*types: str) -> Match:
    return lambda ev: ev.get("type") in types


class Client:
    """One WebSocket connection. ``seen`` keeps every event received, in order."""

    # The default deadline for a receive: generous, since a receive returns as soon as
    # the event is there, and a loaded machine (2 shared cores, a CPU hog) can take
    # seconds to produce it. ``expect_authenticated=False``: a gateway in dev mode that
    # does not push ``authenticated`` (the reference profile); the handshake then ends
    # at ``connected``. ``token``: sent when the welcome says ``requiresAuth`` (the
    # app's embedded gateway, whose token is in runtime.json's ``gatewayToken``).
    def __init__(
        self,
        url: str,
        *,
        handshake: bool = True,
        timeout: float = 30.0,
        expect_authenticated: bool = True,
        token: str | None = None,
    ):
        self.ws = websocket.create_connection(
            url, timeout=timeout, suppress_origin=True
        )
        self.timeout = timeout
        self.seen: list[Event] = []
        self._unread: list[Event] = []
        self.authenticated: Event | None = None
        if handshake:
            self.welcome = self.next()
            self.connected = self.next()
            if self.welcome.get("requiresAuth") and token is not None:
                self.send("authenticate", token=token)
                self.authenticated = self.next()
            elif not self.welcome.get("requiresAuth") and expect_authenticated:
                self.authenticated = self.next()

    # --- sending ----------------------------------------------------------------------

    def send(self, type: str, **args: Any) -> None:
        self.ws.send(build_client_message(type, args))

    def send_raw(self, data: str | bytes, binary: bool = False) -> None:
        if binary:
            self.ws.send_binary(data)
        else:
            self.ws.send(data)

    # --- receiving --------------------------------------------------------------------

    def next(self, timeout: float | None = None) -> Event:
        """The next event (one put back by ``wait`` first)."""
        if self._unread:
            return self._unread.pop(0)
        self.ws.settimeout(timeout or self.timeout)
        try:
            opcode, data = self.ws.recv_data()
        except websocket.WebSocketTimeoutException:
            raise GatewayTimeout("no event within the timeout") from None
        assert opcode == websocket.ABNF.OPCODE_TEXT, f"unexpected opcode {opcode}"
        ev = json.loads(data)
        self.seen.append(ev)
        return ev

    def wait(
        self,
        match: Match | str,
        timeout: float | None = None,
        keep_others: bool = False,
    ) -> Event:
        """Receive until an event matches (a predicate, or a type name); return it.

        Events skipped on the way are dropped unless ``keep_others`` (then ``next``
        returns them).
        """
        if isinstance(match, str):
            match = is_type(match)
        deadline = time.monotonic() + (timeout or self.timeout)
        skipped = []
        try:
            while True:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise GatewayTimeout(
                        f"no matching event; skipped {[e.get('type') for e in skipped][-20:]}"
                    )
                ev = self.next(left)
                if match(ev):
                    return ev
                skipped.append(ev)
        finally:
            if keep_others:
                self._unread[:0] = skipped

    def collect(self, until: Match | str, timeout: float | None = None) -> list[Event]:
        """Every event received up to and including the first that matches ``until``."""
        if isinstance(until, str):
            until = is_type(until)
        out: list[Event] = []
        deadline = time.monotonic() + (timeout or self.timeout)
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise GatewayTimeout(
                    f"no terminating event; got {[e.get('type') for e in out][-20:]}"
                )
            ev = self.next(left)
            out.append(ev)
            if until(ev):
                return out

    def request(self, type: str, timeout: float | None = None, **args: Any) -> Event:
        """Send a request and return its answer: an event from RESPONSES[type], or an
        error."""
        self.send(type, **args)
        answers = RESPONSES[type] | {"error"}
        return self.wait(lambda ev: ev.get("type") in answers, timeout)

    def ok(self, type: str, timeout: float | None = None, **args: Any) -> Event:
        ev = self.request(type, timeout, **args)
        assert ev["type"] != "error", f"{type} failed: {ev}"
        return ev

    # --- conveniences -----------------------------------------------------------------

    def new_session(self, agent: str = "echo", join: bool = True, **args: Any) -> str:
        sid = self.ok("create_session", agentType=agent, **args)["session"]["id"]
        if join:
            self.ok("join_session", sessionId=sid)
        return sid

    def run(
        self, sid: str, text: str, timeout: float | None = None, **args: Any
    ) -> list[Event]:
        """Run a turn and return its events from turn_started to
        turn_complete/turn_error."""
        self.send("run_turn", sessionId=sid, text=text, **args)
        started = self.wait(
            lambda ev: ev.get("type") in ("turn_started", "error"), timeout
        )
        assert started["type"] == "turn_started", started
        turn_id = started["turnId"]
        rest = self.collect(
            lambda ev: (
                ev.get("turnId") == turn_id
                and ev["type"] in ("turn_complete", "turn_error")
            ),
            timeout,
        )
        return [started] + rest

    def close(self) -> None:
        try:
            self.ws.close(timeout=1)
        except Exception:
            pass

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def authenticated_socket(
    url: str, token: str, timeout: float = 30.0
) -> websocket.WebSocket:
    """A plain WebSocket to the gateway, past its handshake (authenticated when it asks
    for a token)."""
    ws = websocket.create_connection(url, timeout=timeout, suppress_origin=True)
    welcome = json.loads(ws.recv())
    if welcome.get("requiresAuth"):
        ws.send(json.dumps({"type": "authenticate", "token": token}))
    while json.loads(ws.recv())["type"] != (
        "authenticated" if welcome.get("requiresAuth") else "connected"
    ):
        pass
    return ws


def turn_events(events: list[Event], turn_id: str) -> list[Event]:
    return [e for e in events if e.get("turnId") == turn_id]


def text_of(events: list[Event]) -> str:
    return "".join(e["text"] for e in events if e["type"] == "text_delta")
