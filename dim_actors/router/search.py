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


def search_chats(
    chats: Iterable[ChatLike], query: str, limit: int = LIMIT_DEFAULT
) -> dict[str, Any]:
    """Each turn's user text and assistant text that contain `query` (any case), newest
    turn of each chat first: at most `limit` results, the first match of each text."""
    pattern = re.compile(re.escape(query), re.IGNORECASE)
    results: list[dict[str, Any]] = []
    for chat in chats:
        for turn in reversed(chat.turns):
            for where, text in (
                ("user", turn.userText or ""),
                ("assistant", assistant_text(turn)),
            ):
                m = pattern.search(text)
                if m is None:
                    continue
                if len(results) >= limit:
                    return {"results": results, "more": True}
                results.append(
                    {
                        "sessionId": chat.sessionId,
                        "turnId": turn.turnId,
                        "where": where,
                        **snippet(text, m.start(), m.end()),
                    }
                )
    return {"results": results, "more": False}
