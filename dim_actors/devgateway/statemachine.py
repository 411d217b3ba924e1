"""The session state machine of the reference (§6.2), with the exits it leaves open
filled in.

Documented: inactive→activating; activating→ready|error|inactive;
ready→running|deactivating| inactive|error; running→ready|waiting|error|deactivating;
deactivating→inactive. Ours (the reference shows no full exit set): waiting→running only
(a stop first resolves the open request as dismissed, then leaves through running), and
error→deactivating, so a failed session winds down to inactive and the next join or
run_turn activates it again. Every move the gateway makes, crash recovery included
(sessions.py, recover), goes through check_transition. Permitted but never taken here:
activating→error, ready→inactive, ready→error (docs/protocol.md §7).
"""

from __future__ import annotations

from .errors import GatewayError

TRANSITIONS: dict[str, frozenset[str]] = {
    "inactive": frozenset({"activating"}),
    "activating": frozenset({"ready", "error", "inactive"}),
    "ready": frozenset({"running", "deactivating", "inactive", "error"}),
    "running": frozenset({"ready", "waiting", "error", "deactivating"}),
    "waiting": frozenset({"running"}),
    "error": frozenset({"deactivating"}),
    "deactivating": frozenset({"inactive"}),
}


def check_transition(current: str, new: str) -> None:
    if new not in TRANSITIONS.get(current, ()):
        # A bug in the gateway, not the client's fault; surfaces as InternalError.
        raise GatewayError(
            "InvalidTransition", f"session cannot go from {current} to {new}"
        )
