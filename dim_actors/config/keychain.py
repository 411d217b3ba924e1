"""The gateway token in the OS keychain (`token_source = "keyring"`), through `keyring`
(the Secret Service on Linux).

One entry per gateway: service "dim-desktop", user name the gateway's address exactly as
it is given (`gateway_url`, or `--gateway`), so tokens of two gateways never mix. The
built-in test gateway has none: its token is made afresh at every launch and handed to
it privately, so a saved one could never be right (`save_token` is refused for it).

Every call runs on a thread of its own and is waited for at most `TIMEOUT_S`: a keychain
asking the user to unlock it over D-Bus may wait for ever. A call that times out is
left running (a thread cannot be stopped) and answered with `KeychainError("timeout")`.
Every failure is a `KeychainError` saying what to do, which never holds the token;
`settings.resolve_token` turns it into a `SettingsError`, so the start-up path reports
it as it reports a bad token file.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Literal, TypeVar

import keyring
import keyring.errors

SERVICE = "dim-desktop"
TIMEOUT_S = 10.0

Kind = Literal["absent", "locked", "missing", "timeout", "failed"]

_MESSAGES: dict[Kind, str] = {
    "absent": "No system keychain is available: {detail}; use a token file or "
    "DIM_TOKEN instead (token_source in Settings)",
    "locked": "The keychain is locked: unlock it (log in to your desktop session) "
    "and try again",
    "missing": "No gateway token is saved in the keychain yet for {detail}: save one "
    "from the connection popover",
    "timeout": "The keychain did not answer within {detail} (it may be waiting for "
    "you to unlock it): unlock it and try again, or use a token file or DIM_TOKEN "
    "instead",
    "failed": "The keychain could not {detail}",
}


class KeychainError(Exception):
    """A keychain call that failed, in words saying what to do; `kind` says why."""

    def __init__(self, kind: Kind, detail: str = ""):
        super().__init__(_MESSAGES[kind].format(detail=detail))
        self.kind = kind
        self.detail = detail


def said_at_start(error: KeychainError) -> str:
    """The error as dim-desktop says it when it cannot start: with no token saved, its
    popover cannot be reached to save one, so it says how to get there or do without."""
    if error.kind != "missing":
        return str(error)
    account = error.detail
    return (
        f"No gateway token is saved in the keychain yet for {account}: start "
        "dim-desktop once with --token-file PATH (a file holding the token) and save "
        "it from the connection popover, or save it with: secret-tool store "
        f"--label=dim-desktop service {SERVICE} username {account}"
    )


# Which failure an exception of the keychain is, most specific first. keyring's fail
# backend raises NoKeyringError when no Secret Service answers on the session bus (or
# there is no bus); a dismissed unlock or create prompt is a keychain left locked.
def _secret_service_kinds() -> tuple[tuple[type[BaseException], Kind], ...]:
    # Linux only: elsewhere keyring talks to the system's own keychain, without it.
    try:
        from secretstorage import exceptions as ss
    except ImportError:
        return ()
    return (
        (ss.LockedException, "locked"),
        (ss.PromptDismissedException, "locked"),
        (ss.SecretServiceNotAvailableException, "absent"),
    )


_KINDS: tuple[tuple[type[BaseException], Kind], ...] = (
    (keyring.errors.NoKeyringError, "absent"),
    (keyring.errors.KeyringLocked, "locked"),
    *_secret_service_kinds(),
    (OSError, "absent"),
)


def kind_of(error: BaseException) -> Kind:
    """The kind of failure an exception from keyring (or what it wraps) stands for."""
    for e in (error, error.__cause__):
        if e is None:
            continue
        for cls, kind in _KINDS:
            if isinstance(e, cls):
                return kind
    if isinstance(error, keyring.errors.InitError):
        return "absent"
    return "failed"


_ABSENT_DETAIL = (
    "no Secret Service (such as GNOME Keyring or KWallet) answers on this session's "
    "D-Bus"
)


def _explain(error: BaseException, doing: str, secret: str | None) -> KeychainError:
    kind = kind_of(error)
    if kind == "absent":
        return KeychainError("absent", _ABSENT_DETAIL)
    if kind == "locked":
        return KeychainError("locked")
    text = str(error) or type(error).__name__
    if secret:
        text = text.replace(secret, "***")
    return KeychainError("failed", f"{doing}: {text}")


T = TypeVar("T")


def bounded(call: Callable[[], T], timeout_s: float) -> T:
    """`call()` on a daemon thread, waited for at most `timeout_s`."""
    done = threading.Event()
    out: list[T] = []
    failed: list[BaseException] = []

    def run() -> None:
        try:
            out.append(call())
        except BaseException as e:  # handed to the caller's thread
            failed.append(e)
        finally:
            done.set()

    threading.Thread(target=run, name="keychain", daemon=True).start()
    if not done.wait(timeout_s):
        raise KeychainError("timeout", f"{timeout_s:g} s")
    if failed:
        raise failed[0]
    return out[0]


def read_token(account: str, *, timeout_s: float = TIMEOUT_S) -> str:
    """The token saved for the gateway `account` (its address)."""
    try:
        token = bounded(lambda: keyring.get_password(SERVICE, account), timeout_s)
    except KeychainError:
        raise
    except Exception as e:
        raise _explain(e, "read the token", None) from None
    if not token:
        raise KeychainError("missing", account)
    return token


def save_token(account: str, token: str, *, timeout_s: float = TIMEOUT_S) -> None:
    """Save (or replace) the token of the gateway `account`."""
    try:
        bounded(lambda: keyring.set_password(SERVICE, account, token), timeout_s)
    except KeychainError:
        raise
    except Exception as e:
        raise _explain(e, "save the token", token) from None


def delete_token(account: str, *, timeout_s: float = TIMEOUT_S) -> bool:
    """Forget the token of the gateway `account`; False when none was saved."""

    def delete() -> bool:
        try:
            keyring.delete_password(SERVICE, account)
        except keyring.errors.PasswordDeleteError:
            # keyring's answer for no entry; a locked or absent keychain raises others
            return False
        return True

    try:
        return bounded(delete, timeout_s)
    except KeychainError:
        raise
    except Exception as e:
        raise _explain(e, "delete the token", None) from None
