"""`dim-gateway --seed-history`: a long session written into the store, served like any other."""

from __future__ import annotations

import subprocess
import sys

import pytest
from apphelpers import ROOT, GatewayProcess
from gateway_helpers import Client, text_of

from dim_actors.devgateway import BackgroundGateway
from dim_actors.devgateway.seed import parse_spec, seed_history


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("10", (10, 1_000)),
        ("10000:1000000", (10_000, 1_000_000)),
        ("2:6", (2, 6)),
    ],
)
def test_a_spec_names_turns_and_events(spec, expected):
    assert parse_spec(spec) == expected


@pytest.mark.parametrize(
    ("spec", "says"),
    [
        ("many", "whole numbers"),
        ("10:x", "whole numbers"),
        ("0", "at least 1 turn"),
        ("2:5", "3 events per turn"),
        ("-1:100", "at least 1 turn"),
    ],
)
def test_a_bad_spec_says_what_is_wrong(spec, says):
    with pytest.raises(ValueError, match=says):
        parse_spec(spec)


def test_the_seeded_session_is_served_whole_and_in_order(tmp_path):
    sid = seed_history(tmp_path, 7, 100)
    with BackgroundGateway(data_dir=tmp_path, rate_limit=100_000) as gw:
        c = Client(gw.url)
        try:
            listed = c.ok("list_sessions")["sessions"]
            assert [s["id"] for s in listed] == [sid]
            snap = c.ok("join_session", sessionId=sid)
            # joining wakes the session up (status events follow the seeded ones)
            assert snap["lastSeq"] >= 100
            events = c.ok("get_events", sessionId=sid, afterSeq=0, limit=1000)["events"]
            assert [e["seq"] for e in events] == list(range(1, snap["lastSeq"] + 1))
            events = events[:100]
            starts = [e for e in events if e["type"] == "turn_started"]
            ends = [e for e in events if e["type"] == "turn_complete"]
            assert len(starts) == len(ends) == 7
            # 86 deltas over 7 turns: the first two get 13, the rest 12
            last = starts[-1]["turnId"]
            deltas = [
                e
                for e in events
                if e.get("turnId") == last and e["type"] == "text_delta"
            ]
            assert len(deltas) == 12
            assert ends[-1]["finalText"] == text_of(deltas)
            history = c.ok("get_history", sessionId=sid)["turns"]
            assert [t["status"] for t in history] == ["complete"] * 7
            assert history[0]["text"] == "Question 1: what about part 1?"
            assert history[-1]["finalText"] == ends[-1]["finalText"]
            # the session goes on from there: a new turn follows the seeded seqs
            c.send("run_turn", sessionId=sid, text="and now?")
            started = c.wait("turn_started")
            assert started["seq"] > snap["lastSeq"]
        finally:
            c.close()


def test_the_command_line_seeds_and_says_which_session(tmp_path):
    gw = GatewayProcess(tmp_path, args=["--seed-history", "3:30"], stderr=True).start()
    try:
        said = gw.proc.stderr.readline()  # type: ignore[union-attr]
        assert "(3 turns, 30 events)" in said
        sid = said.split("added session ")[1].split()[0]
        c = Client(gw.url)
        try:
            assert c.ok("join_session", sessionId=sid)["lastSeq"] >= 30
        finally:
            c.close()
    finally:
        gw.stop()


def test_a_bad_spec_on_the_command_line_is_refused_clearly(tmp_path):
    out = subprocess.run(
        [sys.executable, "-m", "dim_actors.devgateway", "--seed-history", "lots"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 2
    assert "--seed-history takes TURNS or TURNS:EVENTS" in out.stderr
