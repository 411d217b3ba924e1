"""Whether a frame from the gateway can be read at all, before anything is done with it
(pure; tests/test_connection_intake.py). The common frame costs a count of its brackets.
"""

from __future__ import annotations

from dataclasses import dataclass

from dim_actors.wire import protocol

TOO_DEEP = f"nested deeper than {protocol.MAX_DEPTH} levels"


@dataclass(frozen=True)
class Admitted:
    """A frame to handle: as it is, or with its too-deep events cut out (a page of
    events), or with `replaced` lone surrogate escapes made U+FFFD (`unfixed`: the frame
    before that)."""

    data: bytes
    head: protocol.EventHead
    replaced: int = 0
    unfixed: bytes = b""


@dataclass(frozen=True)
class Refused:
    """A bad frame, and why. One refused for its depth may still answer a request: its
    head and its pruned bytes are then here (`answer`), so that request fails at once
    instead of waiting out its timeout for an answer that has come."""

    reason: str
    answer: tuple[protocol.EventHead, bytes] | None = None


def admit(data: bytes) -> Admitted | Refused:
    """A frame nested deeper than protocol.MAX_DEPTH is refused, unless it is a page of
    events: its too-deep parts are cut out so its other events still arrive (each cut
    event is then skipped and reported with the page). A frame msgspec refuses as JSON
    because of lone surrogate escapes (no character, though valid JSON syntax) keeps the
    rest of its text."""
    if protocol.too_deep(data):
        # an event_list's events sit 2 deep
        page, _ = protocol.prune_deep(data, protocol.MAX_DEPTH + 2)
        try:
            head = protocol.decode_head(page, max_depth=protocol.MAX_DEPTH + 2)
        except protocol.ProtocolError:
            return Refused(TOO_DEEP)
        if head.type != "event_list":
            return Refused(TOO_DEEP, (head, page))
        data = page
    try:
        return Admitted(data, protocol.decode_head(data, max_depth=None))
    except protocol.ProtocolError as e:
        error = e
    if error.code == "INVALID_JSON":
        fixed, n = protocol.replace_lone_surrogates(data)
        if n:
            try:
                return Admitted(
                    fixed, protocol.decode_head(fixed, max_depth=None), n, data
                )
            except protocol.ProtocolError:
                pass
    return Refused(error.message)
