"""Which gateway frames are read at all (dim_actors/connection/process/intake.py)."""

from __future__ import annotations

import pytest

from dim_actors.connection.process.intake import TOO_DEEP, Admitted, Refused, admit
from dim_actors.wire import protocol

DEEP = b"[" * 150 + b"]" * 150  # past protocol.MAX_DEPTH


def frame(type_: str, inner: bytes = b"1", **fields: str) -> bytes:
    extra = b"".join(f',"{k}":"{v}"'.encode() for k, v in fields.items())
    return b'{"type":"' + type_.encode() + b'"' + extra + b',"x":' + inner + b"}"


@pytest.mark.parametrize(
    "data, kind, type_, replaced, reason, answers",
    [
        (frame("text_delta", sessionId="s1"), Admitted, "text_delta", 0, None, False),
        (
            b'{"type":"text_delta","text":"a\\ud800b"}',
            Admitted,
            "text_delta",
            1,
            None,
            False,
        ),
        (
            b'{"type":"text_delta","text":"\\udc00\\udc01"}',
            Admitted,
            "text_delta",
            2,
            None,
            False,
        ),
        (
            b'{"type":"text_delta","text":"a\\u00e9b"}',
            Admitted,
            "text_delta",
            0,
            None,
            False,
        ),
        # an event_list keeps its readable events; the deep part is cut out
        (
            b'{"type":"event_list","events":[{"seq":1,"x":' + DEEP + b"}]}",
            Admitted,
            "event_list",
            0,
            None,
            False,
        ),
        # any other deep frame is refused, and may still answer a request
        (frame("history", DEEP, sessionId="s1"), Refused, None, 0, TOO_DEEP, True),
        (DEEP, Refused, None, 0, TOO_DEEP, False),  # no envelope to read at all
        (b"not json", Refused, None, 0, "", False),
        (b'{"no":"type"}', Refused, None, 0, "", False),
        (b'{"type":"text_delta","text":"a\\ud800b"', Refused, None, 0, "", False),
    ],
)
def test_a_frame_is_admitted_or_refused(data, kind, type_, replaced, reason, answers):
    got = admit(data)
    assert type(got) is kind
    if isinstance(got, Admitted):
        assert got.head.type == type_ and got.replaced == replaced
        if replaced:
            assert got.unfixed == data and b"\\ufffd" in got.data
        else:
            assert not protocol.too_deep(got.data, protocol.MAX_DEPTH + 2)
    else:
        assert reason in got.reason
        assert (got.answer is not None) == answers
        if answers:
            assert got.answer[0].type == "history" and got.answer[0].sessionId == "s1"
