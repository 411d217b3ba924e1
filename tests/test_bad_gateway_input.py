"""Bad input from a gateway is logged, counted, surfaced to the page, and never fatal."""

from __future__ import annotations

import json

import pytest

from apphelpers import App, wait_until
from misbehaving_gateway import MisbehavingGateway


@pytest.fixture
def bad_gateway():
    gw = MisbehavingGateway().start()
    yield gw
    gw.stop()


def test_malformed_frames_are_reported_and_the_connection_survives(dim_home, bad_gateway):
    app = App(dim_home, ["--gateway", bad_gateway.url])
    try:
        app.wait_connected()
        events = app.events()
        good = {"type": "brand_new_event", "sessionId": "s1", "seq": 4, "ts": 5, "novel": {"x": [1, 2]}}
        bad_gateway.send("{this is not json")
        bad_gateway.send(json.dumps({"type": "text_delta", "sessionId": "s1", "seq": "two", "ts": 1}))
        bad_gateway.send(json.dumps([1, 2, 3]))
        bad_gateway.send(b"\x00\x01binary")
        bad_gateway.send(json.dumps({"type": "turn_started", "sessionId": "s1", "turnId": 7, "seq": 2, "ts": 1}))
        # Right envelope, wrong field type inside: the stores refuse it, the router stays up.
        bad_gateway.send(json.dumps({"type": "text_delta", "sessionId": "s1", "turnId": "t", "seq": 3, "ts": 1,
                                     "text": 5}))
        bad_gateway.send("x" * (17 << 20))
        bad_gateway.send(json.dumps(good))
        frames = events.wait_for(lambda fs: [f for f in fs if f["event"] == "gateway-warning"]
                                 if sum(f["event"] == "gateway-warning" for f in fs) >= 7 else None,
                                 20, what="seven warnings")
        reasons = " | ".join(f["payload"]["reason"] for f in frames)
        assert "not JSON" in reasons and "binary" in reasons and "over the" in reasons
        # The unknown event after all that still arrives, intact, as a generic event.
        got = events.wait_event("brand_new_event")
        assert got == good
        row = app.status()["connection"]
        assert row["connection"] == "connected" and row["reconnects"] == 0 and row["restarts"] == 0
        assert row["badFrames"] >= 5
        assert app.status()["router"]["restarts"] == 0 and app.status()["router"]["badEvents"] >= 1
        state = app.invoke("get_state")
        assert good in state["chats"]["s1"]["other"]
    finally:
        app.stop()


def test_a_socket_closed_mid_frame_reconnects(dim_home, bad_gateway):
    app = App(dim_home, ["--gateway", bad_gateway.url])
    try:
        app.wait_connected()
        bad_gateway.send("CLOSE_MID_FRAME")
        wait_until(lambda: bad_gateway.connections >= 2, 20, what="the client to reconnect")
        app.wait_connected()
        assert app.status()["connection"]["reconnects"] >= 1
    finally:
        app.stop()
