"""`save_token {token}`: keep the gateway token in the OS keychain, make the keychain
the token's source, and hand it to the connection (the router does that part).

The keychain entry is the gateway's address in use (the connection's own), the one
`dim-desktop` looks up at start (config/keychain.py). The keychain may wait for an unlock
prompt, so `save` runs off the router's thread, bounded by keychain.TIMEOUT_S.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from dim_actors.config import keychain
from dim_actors.config.settings import Settings, read_file, settings_command


def refusal(url: str | None, builtin_url: str | None) -> str | None:
    """Why no token can be saved for the connection's gateway now; None when one can."""
    if not url:
        return (
            "save_token: not connected to any gateway: enter its address above, "
            "connect, then save its token"
        )
    if url == builtin_url:
        return (
            "save_token: the built-in test gateway needs no saved token (dim-desktop "
            "makes a new one at every start): connect to your own gateway first"
        )
    return None


def save(
    url: str,
    token: str,
    settings_path: Path,
    running: Settings | None,
    on_change: Callable[[Settings], None] | None,
) -> tuple[bool, dict[str, Any]]:
    """Save the token for `url` and set token_source = "keyring" (through set_settings'
    own code) unless it already is: (ok, result) or (False, {code, message})."""
    try:
        keychain.save_token(url, token)
    except keychain.KeychainError as e:
        return False, {"code": "KEYCHAIN", "kind": e.kind, "message": str(e)}
    try:
        already = read_file(settings_path).get("token_source") == "keyring"
    except ValueError:  # an unreadable file: set_settings below says why
        already = False
    if not already:
        ok, out = settings_command(
            "set_settings",
            {"changes": {"token_source": "keyring"}},
            settings_path,
            running,
            on_change,
        )
        if not ok:
            return False, {
                **out,
                "message": "The token is saved in the keychain, but the setting to "
                f"use it could not be: {out['message']}",
            }
    return True, {"url": url, "tokenSource": "keyring", "state": "connecting"}
