"""Which form of a request a gateway understands, learned from its answers
(docs/protocol.md §11).

The public docs give only the names of `steer` and `answer_question`, and v1 as they
know it has no `run_turn.clientTurnId`: our fields are guesses (the ACP adapter's
vocabulary), and a gateway may have guessed otherwise. A request a gateway refuses as
`INVALID_MESSAGE` is sent again in the next form of its table; the first form that gets
a real answer is used from then on, on that gateway. Pure: the connection process owns
the sockets and asks this module what to send.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import msgspec

# A form takes our request's fields and gives the fields to send, or None when the
# request cannot be said that way (then the next form is tried).
Form = Callable[[dict[str, Any]], dict[str, Any] | None]


def _ours(fields: dict[str, Any]) -> dict[str, Any] | None:
    return fields


def _without_client_turn_id(fields: dict[str, Any]) -> dict[str, Any] | None:
    if "clientTurnId" not in fields:
        return None  # the same as ours: nothing new to try
    return {k: v for k, v in fields.items() if k != "clientTurnId"}


def _steer_text(fields: dict[str, Any]) -> dict[str, Any] | None:
    # run_turn's vocabulary: `text`, as a gateway that named steer's field after it
    # would.
    return {
        "type": "steer",
        "sessionId": fields.get("sessionId"),
        "text": fields.get("content"),
    }


def _answer_single(fields: dict[str, Any]) -> dict[str, Any] | None:
    out: dict[str, Any] = {
        "type": "answer_question",
        "sessionId": fields.get("sessionId"),
        "requestId": fields.get("requestId"),
    }
    answers = fields.get("answers")
    if isinstance(answers, list) and answers:
        out["answer"] = ", ".join(str(a) for a in answers)
    if isinstance(fields.get("approved"), bool):
        out["approved"] = fields["approved"]
    if len(out) == 3:
        return None  # a dismissal alone: this vocabulary has no word for it
    return out


FORMS: dict[str, tuple[tuple[str, Form], ...]] = {
    "run_turn": (("ours", _ours), ("no clientTurnId", _without_client_turn_id)),
    "steer": (("ours", _ours), ("text", _steer_text)),
    "answer_question": (("ours", _ours), ("single answer", _answer_single)),
}

# The refusal that means "not in this form": a schema mismatch (docs: INVALID_MESSAGE
# covers a missing or mistyped field). Any other error is the gateway's answer to the
# request itself.
FORM_REFUSED = "INVALID_MESSAGE"


class Dialect:
    """The form of each request type known to work on the current gateway (index into
    FORMS)."""

    def __init__(self) -> None:
        self.known: dict[str, int] = {}

    def reset(self) -> None:
        """Another gateway: nothing learned of the last one holds."""
        self.known.clear()

    def first(self, type_: str, frame: bytes) -> tuple[int, bytes]:
        """The form to send a new request in: the one that worked before, else ours."""
        start = self.known.get(type_, 0)
        if start == 0:
            return 0, frame
        got = self.render(type_, frame, start)
        return got if got is not None else (0, frame)

    def render(self, type_: str, frame: bytes, start: int) -> tuple[int, bytes] | None:
        """The first form from `start` on that can say this request, with its frame;
        None if none can."""
        forms = FORMS.get(type_, ())
        fields = msgspec.json.decode(frame)
        for index in range(start, len(forms)):
            out = forms[index][1](fields)
            if out is not None:
                return index, frame if out is fields else msgspec.json.encode(out)
        return None

    def refused(
        self, type_: str, frame: bytes, index: int, code: str
    ) -> tuple[int, bytes] | None:
        """A request in form `index` was refused with `code`: the next form to try, or
        None."""
        if code != FORM_REFUSED or type_ not in FORMS:
            return None
        return self.render(type_, frame, index + 1)

    def answered(self, type_: str, index: int) -> None:
        if type_ in FORMS:
            self.known[type_] = index

    def describe(self) -> dict[str, str]:
        return {t: FORMS[t][i][0] for t, i in self.known.items()}


def form_name(type_: str, index: int) -> str:
    forms = FORMS.get(type_, ())
    return forms[index][0] if 0 <= index < len(forms) else "ours"
