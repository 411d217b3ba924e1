"""What the dev gateway does beyond the public Diminuendo docs, switchable as one
profile.

``dev`` is the gateway dim-desktop was built beside: every guess of ours on
(docs/protocol.md). ``reference`` does only what the public docs describe and differs
where they are silent, so the client can be tested against a gateway that guessed
differently than we did (docs/dev-gateway.md).
"""

from __future__ import annotations

from typing import Literal

import msgspec

ProfileName = Literal["dev", "reference"]
# get_events: answered with our event_list, refused with an error, or never answered at
# all.
GetEventsMode = Literal["answer", "error", "silent"]
# steer / answer_question fields: ours (`content`; `answers`/`approved`/`dismissed`), or
# the v1-style guess of a gateway that took run_turn's vocabulary (`text`;
# `answer`/`approved`).
Vocabulary = Literal["ours", "v1"]


class GatewayProfile(msgspec.Struct, frozen=True, kw_only=True):
    name: ProfileName = "dev"
    protocol_version: int = 1
    # In dev mode (no token), push `authenticated` right after `connected` (the
    # quickstart's three frames).
    push_authenticated: bool = True
    get_events: GetEventsMode = "answer"
    ping_answered: bool = True  # `pong` to `ping`
    replicate: bool = True  # the /replicate endpoint (docs/sync.md)
    # run_turn.clientTurnId echoed in turn_started and deduplicated
    client_turn_ids: bool = True
    vocabulary: Vocabulary = "ours"


DEV = GatewayProfile()
REFERENCE = GatewayProfile(
    name="reference",
    push_authenticated=False,
    get_events="error",
    ping_answered=False,
    replicate=False,
    client_turn_ids=False,
    vocabulary="v1",
)
PROFILES: dict[str, GatewayProfile] = {"dev": DEV, "reference": REFERENCE}
