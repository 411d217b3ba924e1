"""`search_sessions`: message text across every chat the stores hold (docs/contracts.md
§3). Pure: it reads the stores' chats and returns plain data."""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any, Protocol

QUERY_MAX = 200
LIMIT_DEFAULT = 50
SNIPPET = 120
_BLANKS = str.maketrans({"\n": " ", "\r": " ", "\t": " "})


class TurnLike(Protocol):
    turnId: str
    userText: str | None
    finalText: str | None

    @property
    def text(self) -> str: ...


class ChatLike(Protocol):
    sessionId: str
    turns: list[Any]


def query_problem(query: str) -> str | None:
    """Why a query cannot be searched for, in plain words; None when it can."""
    if not query.strip():
        return "query must not be empty"
    if len(query) > QUERY_MAX:
        return f"query is longer than {QUERY_MAX} characters"
    return None


def assistant_text(turn: TurnLike) -> str:
    """What the page shows as the answer: the streamed text, or the final text when it
    says more (deltas lost, a turn from history)."""
    streamed = turn.text
    final = turn.finalText or ""
    return final if len(final) > len(streamed) else streamed


def snippet(text: str, start: int, end: int, width: int = SNIPPET) -> dict[str, Any]:
    """About `width` characters of `text` around [start, end), cut at spaces, with the
    match's place inside the snippet. Newlines and tabs become spaces, one for one."""
    room = max(0, width - (end - start))
    lo = max(0, start - room // 2)
    hi = min(len(text), end + (room - (start - lo)))
    lo = max(0, min(lo, hi - width))
    if lo > 0:
        space = text.find(" ", lo, start)
        if space != -1:
            lo = space + 1
    if hi < len(text):
        space = text.rfind(" ", end, hi)
        if space != -1:
            hi = space
    head = "…" if lo > 0 else ""
    tail = "…" if hi < len(text) else ""
    piece = head + text[lo:hi].translate(_BLANKS) + tail
    return {
        "snippet": piece,
        "matchStart": start - lo + len(head),
        "matchEnd": end - lo + len(head),
    }


# A chat's searchable texts, newest turn first: (turnId, user text, assistant text).
ChatTexts = tuple[str, list[tuple[str, str, str]]]


def texts_of(chats: Iterable[ChatLike]) -> list[ChatTexts]:
    """What a search reads, taken from the stores on their own thread (a turn's text is
    joined there): the strings themselves are not copied, and the search can then run
    elsewhere while the stores go on."""
    return [
        (
            chat.sessionId,
            [
                (turn.turnId, turn.userText or "", assistant_text(turn))
                for turn in reversed(chat.turns)
            ],
        )
        for chat in chats
    ]


def search_texts(
    chats: Iterable[ChatTexts], query: str, limit: int = LIMIT_DEFAULT
) -> dict[str, Any]:
    """Each turn's user text and assistant text that contain `query` (any case), in the
    order given: at most `limit` results, the first match of each text."""
    pattern = re.compile(re.escape(query), re.IGNORECASE)
    results: list[dict[str, Any]] = []
    for session_id, turns in chats:
        for turn_id, user, assistant in turns:
            for where, text in (("user", user), ("assistant", assistant)):
                m = pattern.search(text)
                if m is None:
                    continue
                if len(results) >= limit:
                    return {"results": results, "more": True}
                results.append(
                    {
                        "sessionId": session_id,
                        "turnId": turn_id,
                        "where": where,
                        **snippet(text, m.start(), m.end()),
                    }
                )
    return {"results": results, "more": False}
