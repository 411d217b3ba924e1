"""How the gateway reads client frames: the schema stage of the inbound checks, per
profile.

The public docs name ``steer`` and ``answer_question`` but give no fields. Ours are
``content`` and ``answers``/``approved``/``dismissed``; a gateway that took run_turn's
vocabulary instead (profile ``vocabulary="v1"``) reads ``steer {sessionId, text}`` and
``answer_question {sessionId, requestId, answer?, approved?}``. Those are the Structs
below. protocol.py's Structs are the client's and stay as they are: a v1 message is
decoded here and handed on as ours, so each handler has one path. Unknown fields are
ignored (msgspec's default), as the reference's Effect Schema does.
"""

from __future__ import annotations

from typing import Union

import msgspec

from dim_actors.wire import protocol as p

from .profile import GatewayProfile


class V1Steer(p.ClientMessage, tag="steer", kw_only=True):
    sessionId: p.NonEmpty
    text: str

    def ours(self) -> p.Steer:
        return p.Steer(sessionId=self.sessionId, content=self.text)


class V1AnswerQuestion(p.ClientMessage, tag="answer_question", kw_only=True):
    sessionId: p.NonEmpty
    requestId: p.NonEmpty
    answer: str | None = None
    approved: bool | None = None

    def ours(self) -> p.AnswerQuestion:
        if self.answer is None and self.approved is None:
            # Part of the schema (an Effect Schema filter would say it), so refused
            # before auth.
            raise p.ProtocolError(
                "INVALID_MESSAGE", "invalid answer_question: needs answer or approved"
            )
        answers = None if self.answer is None else [self.answer]
        return p.AnswerQuestion(
            sessionId=self.sessionId,
            requestId=self.requestId,
            answers=answers,
            approved=self.approved,
        )


V1_MESSAGES: dict[str, type[p.ClientMessage]] = {
    "steer": V1Steer,
    "answer_question": V1AnswerQuestion,
}


class ClientDecoder:
    """``decode(raw)`` is a client frame as one of protocol.py's Structs, or a
    ProtocolError (INVALID_JSON / INVALID_MESSAGE), read the way ``profile`` says this
    gateway reads it."""

    def __init__(self, profile: GatewayProfile):
        self.messages: dict[str, type[msgspec.Struct]] = dict(p.CLIENT_MESSAGES)
        if profile.vocabulary == "v1":
            self.messages.update(V1_MESSAGES)
        self.refuse_get_events = profile.get_events == "error"
        # a Union of a tuple built at run time has no `X | Y` spelling
        self._decoder = msgspec.json.Decoder(Union[tuple(self.messages.values())])  # noqa: UP007

    def decode(self, raw: bytes | str) -> msgspec.Struct:
        try:
            msg = self._decoder.decode(raw)
        except msgspec.ValidationError as e:
            raise p.ProtocolError(
                "INVALID_MESSAGE", p.explain_invalid(raw, e, self.messages)
            ) from None
        except msgspec.DecodeError as e:
            raise p.ProtocolError("INVALID_JSON", f"not valid JSON: {e}") from None
        if isinstance(msg, (V1Steer, V1AnswerQuestion)):
            return msg.ours()
        if self.refuse_get_events and isinstance(msg, p.GetEvents):
            # A gateway whose get_events fields differ from ours refuses ours at the
            # schema stage.
            raise p.ProtocolError(
                "INVALID_MESSAGE",
                "invalid get_events: the fields match no get_events schema "
                "this gateway knows",
            )
        return msg
