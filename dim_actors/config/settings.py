"""User settings: a TOML file in DIM_HOME, with defaults for everything.

`load_settings` reads it at start; the Settings screen reads and edits it through the
bridge commands `get_settings` and `set_settings {changes}` (`settings_command`). Every
validation error names the key it is about; a rejected change leaves the file, and so
the settings, as they were. The file is replaced atomically, and only the keys the user
set are written.
"""

from __future__ import annotations

import math
import os
import re
import stat
import tempfile
import tomllib
import typing
from pathlib import Path
from typing import Annotated, Any, Literal

import msgspec
import tomli_w

MiB = 1 << 20
_Pos = msgspec.Meta(gt=0)
PositiveFloat = Annotated[float, _Pos]


class SettingsError(ValueError):
    """A bad settings file or a bad change. `key` names the setting at fault (when there
    is one)."""

    def __init__(self, message: str, key: str | None = None, problem: str = ""):
        super().__init__(message)
        self.key = key
        # The message without the key, for a form that shows it next to the field.
        self.problem = problem


class SettingsFileError(SettingsError):
    """settings.toml cannot be read or saved (a folder in its place, no permission, a
    full disk): the file's fault, not the command's arguments."""


class Settings(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    gateway_url: str | None = None
    # Where the gateway token comes from when neither --token nor --token-file is given:
    # "env" ($DIM_TOKEN), "file" (the first line of token_file, a file only its owner
    # may read), "keyring" (the OS keychain, dim_actors/config/keychain.py), or "flag".
    token_source: Literal["flag", "env", "file", "keyring"] = "env"
    token_file: str | None = None
    # How dim-desktop shows its UI at start: the native window where it can, else the
    # browser.
    ui_open: Literal["auto", "window", "browser", "none"] = "auto"
    tray: bool = True
    native_notifications: bool = True
    # An XDG autostart entry (~/.config/autostart) starts dim-desktop when the user logs in.
    start_at_login: bool = False
    # Local sync defaults (docs/sync.md §7): the folder session folders go under by
    # default (<sync_root>/<session name>: the Sync panel's suggestion, start_sync
    # without localDir), whether a session never synced starts syncing there when the
    # page joins it, and ignore patterns (gitignore syntax, applied like the folder's
    # own .gitignore) on top of the built-in ones.
    sync_root: str | None = None
    sync_auto_start: bool = False
    sync_extra_ignore: list[str] = []
    # A local file larger than this is not synced (listed as too large); below this much
    # free space on the sync folder's disk, sync pauses (None: 64 MiB or 1 % of the
    # disk, whichever is smaller; 0: off).
    sync_max_file_mb: Annotated[int, msgspec.Meta(ge=1, le=1 << 20)] = 100
    sync_min_free_mb: Annotated[int, msgspec.Meta(ge=0)] | None = None
    # Restart intensity: at most `max_restarts` restarts of one actor within
    # `restart_period_s`.
    max_restarts: Annotated[int, msgspec.Meta(ge=0, le=1000)] = 3
    restart_period_s: PositiveFloat = 5.0
    shutdown_timeout_s: PositiveFloat = 5.0
    # A single message handled for longer than this means the actor is hung.
    hang_timeout_s: PositiveFloat = 30.0
    # The connection's keepalive: our ping interval and how long silence means a dead
    # link (0: 1.5 times the gateway's advertised heartbeatIntervalMs, at least 10 s;
    # connection/staleness.py).
    ping_interval_s: PositiveFloat = 30.0
    stale_after_s: Annotated[float, msgspec.Meta(ge=0)] = 0.0
    request_timeout_s: PositiveFloat = 30.0
    # The gateway's per-connection rate limit (60 messages in 10 s): the client paces
    # itself under it.
    send_rate_limit: Annotated[int, msgspec.Meta(ge=0)] = 60
    send_rate_window_s: PositiveFloat = 10.0
    # Events the connection process holds in memory while the supervisor is not draining
    # them; beyond this they spill to a file under DIM_HOME (never dropped).
    uplink_memory_limit: Annotated[int, msgspec.Meta(ge=4096)] = 64 * MiB
    log_ring_size: Annotated[int, msgspec.Meta(ge=1)] = 10_000
    log_max_bytes: Annotated[int, msgspec.Meta(ge=64 * 1024)] = 8 * MiB
    log_keep: Annotated[int, msgspec.Meta(ge=0, le=100)] = 3

    def __post_init__(self) -> None:
        # Raised as "key: message" so the error names the key (see _key_error).
        if self.gateway_url is not None and not self.gateway_url.startswith(
            ("ws://", "wss://")
        ):
            raise ValueError(
                "gateway_url: Enter an address starting with ws:// or wss:// "
                f"(not “{self.gateway_url}”)"
            )
        if self.token_source == "file" and not self.token_file:
            raise ValueError(
                "token_file: Enter the token file's path: the token is to come from a file"
            )
        if self.stale_after_s and self.stale_after_s <= self.ping_interval_s:
            raise ValueError(
                "stale_after_s: Enter 0 (from the gateway's heartbeat) or more than the "
                f"connection check interval, ping_interval_s ({self.ping_interval_s:g} s)"
            )
        for name in (
            "restart_period_s",
            "shutdown_timeout_s",
            "hang_timeout_s",
            "ping_interval_s",
            "stale_after_s",
            "request_timeout_s",
        ):
            if not math.isfinite(getattr(self, name)):
                raise ValueError(f"{name}: Enter a finite number")
        if self.sync_root is not None and not os.path.isabs(
            os.path.expanduser(self.sync_root)
        ):
            raise ValueError(
                "sync_root: Enter a full folder path, starting with / or ~ "
                f"(not “{self.sync_root}”)"
            )
        for pattern in self.sync_extra_ignore:
            if not pattern.strip() or "\n" in pattern or "\x00" in pattern:
                raise ValueError(
                    f"sync_extra_ignore: Enter one pattern per line (“{pattern}” is "
                    "empty or has a line break in it)"
                )


# What the Settings screen shows, in the words a user reads: each key's group, its label,
# the unit next to its input, a help line, and the kind of text it takes (a folder, a
# file, a gateway address). The TOML key is small print for those who edit the file.
GROUPS: tuple[str, ...] = (
    "Gateway",
    "Window and notifications",
    "Sync",
    "Connection (advanced)",
    "Actors (advanced)",
    "Logs (advanced)",
)


class Field(msgspec.Struct, frozen=True):
    group: str
    label: str
    help: str
    unit: str = ""
    kind: str = ""  # "url", "path" (a folder), "file"; "" for the rest


FIELDS: dict[str, Field] = {
    "gateway_url": Field(
        "Gateway",
        "Gateway address",
        "The Diminuendo gateway to connect to, a ws:// or wss:// address. Leave it "
        "empty to use the built-in test gateway. The --gateway option wins over it.",
        kind="url",
    ),
    "token_source": Field(
        "Gateway",
        "Where the gateway token comes from",
        "Used when no --token or --token-file is given. The system keychain holds "
        "one token for each gateway address: save it from the connection popover.",
    ),
    "token_file": Field(
        "Gateway",
        "Token file",
        "A file whose first line is the token, readable only by you (chmod 600). A "
        "relative path is inside dim-desktop's config folder.",
        kind="file",
    ),
    "ui_open": Field(
        "Window and notifications",
        "When dim-desktop starts, open",
        "Automatic: its own window where this computer can show one, else the browser.",
    ),
    "tray": Field(
        "Window and notifications",
        "Show an icon in the system tray",
        "Only where the desktop has a system tray.",
    ),
    "native_notifications": Field(
        "Window and notifications",
        "Show desktop notifications",
        "When a turn ends, fails or asks you something while no dim-desktop window "
        "has the focus.",
    ),
    "start_at_login": Field(
        "Window and notifications",
        "Start dim-desktop when you log in",
        "Adds dim-desktop to your desktop's startup applications.",
    ),
    "sync_root": Field(
        "Sync",
        "Folder for synced sessions",
        "Each session is synced into a folder of its own name inside this one, unless "
        "you choose another. A full path (starting with / or ~).",
        kind="path",
    ),
    "sync_auto_start": Field(
        "Sync",
        "Start syncing new sessions by themselves",
        "A session never synced before starts syncing into its folder (above) when "
        "you open it.",
    ),
    "sync_extra_ignore": Field(
        "Sync",
        "Also leave out of sync",
        "Patterns of files not to sync, one per line, written as in a .gitignore "
        "file (for example *.log or build/).",
    ),
    "sync_max_file_mb": Field(
        "Sync",
        "Do not sync files larger than",
        "Larger files stay on this computer; the Sync panel lists them.",
        unit="MiB",
    ),
    "sync_min_free_mb": Field(
        "Sync",
        "Pause sync when free disk space is below",
        "Empty: 64 MiB or 1% of the disk, whichever is smaller. 0: never pause.",
        unit="MiB",
    ),
    "max_restarts": Field(
        "Actors (advanced)",
        "Restart a failing part of the app at most",
        "If one part (actor) fails more often than this within the period below, "
        "dim-desktop stops instead of restarting it again.",
        unit="times",
    ),
    "restart_period_s": Field(
        "Actors (advanced)",
        "… within",
        "The period the restarts above are counted over.",
        unit="seconds",
    ),
    "shutdown_timeout_s": Field(
        "Actors (advanced)",
        "Give each part this long to stop",
        "When dim-desktop stops or restarts a part of itself.",
        unit="seconds",
    ),
    "hang_timeout_s": Field(
        "Actors (advanced)",
        "Treat a part as stuck after",
        "One message taking longer than this to handle means the part is stuck.",
        unit="seconds",
    ),
    "uplink_memory_limit": Field(
        "Actors (advanced)",
        "Keep incoming events in memory up to",
        "Beyond this, events waiting to be handled are kept in a file on disk "
        "(never dropped).",
        unit="bytes",
    ),
    "ping_interval_s": Field(
        "Connection (advanced)",
        "Check the connection every",
        "How often dim-desktop pings the gateway to keep the connection alive.",
        unit="seconds",
    ),
    "stale_after_s": Field(
        "Connection (advanced)",
        "Treat the connection as lost after a silence of",
        "0: from the gateway's own heartbeat (1.5 times it, at least 10 seconds). "
        "Otherwise it must be more than the check interval above.",
        unit="seconds",
    ),
    "request_timeout_s": Field(
        "Connection (advanced)",
        "Wait for the gateway's answer at most",
        "How long a command waits for the gateway before it fails.",
        unit="seconds",
    ),
    "send_rate_limit": Field(
        "Connection (advanced)",
        "Send at most",
        "The gateway's own limit; dim-desktop paces itself under it. 0: no pacing.",
        unit="messages",
    ),
    "send_rate_window_s": Field(
        "Connection (advanced)",
        "… per",
        "The period the messages above are counted over.",
        unit="seconds",
    ),
    "log_ring_size": Field(
        "Logs (advanced)",
        "Keep in memory, per part, the last",
        "What `dimctl logs` and the Actors panel's log viewer show.",
        unit="messages",
    ),
    "log_max_bytes": Field(
        "Logs (advanced)",
        "Start a new message log file at",
        "An actor's message log is rotated when it reaches this size.",
        unit="bytes",
    ),
    "log_keep": Field(
        "Logs (advanced)",
        "Keep old message log files",
        "How many rotated log files to keep for each part.",
        unit="files",
    ),
}
# The choices of a choice setting, in words.
CHOICE_LABELS: dict[str, dict[str, str]] = {
    "token_source": {
        "env": "The DIM_TOKEN environment variable",
        "file": "A token file (below)",
        "keyring": "The system keychain",
        "flag": "Only the --token option",
    },
    "ui_open": {
        "auto": "Automatic",
        "window": "Its own window",
        "browser": "The web browser",
        "none": "Nothing (use the address it prints)",
    },
}
# Kept for callers that want the help text alone.
HELP: dict[str, str] = {key: f.help for key, f in FIELDS.items()}
# applied at once; every other key at the next start
LIVE_KEYS = frozenset({"native_notifications", "start_at_login"})
KEYS: tuple[str, ...] = Settings.__struct_fields__
RESTART_NOTE = "Takes effect when dim-desktop restarts."


def _bounds(key: str) -> tuple[Any, msgspec.inspect.Type]:
    info = msgspec.inspect.type_info(Settings)
    assert isinstance(info, msgspec.inspect.StructType)
    t = next(f for f in info.fields if f.name == key).type
    optional = False
    if isinstance(t, msgspec.inspect.UnionType):
        inner = [x for x in t.types if not isinstance(x, msgspec.inspect.NoneType)]
        optional, t = True, inner[0]
    return optional, t


def _number(n: float) -> str:
    return f"{n:,g}" if isinstance(n, float) else f"{n:,}"


def _number_expectation(t: msgspec.inspect.Type) -> str:
    if isinstance(t, msgspec.inspect.IntType):
        lo, hi = t.ge, t.le
        if lo is not None and hi is not None:
            return f"Enter a whole number from {_number(lo)} to {_number(hi)}"
        if lo == 0:
            return "Enter a whole number, 0 or more"
        if lo is not None:
            return f"Enter a whole number of at least {_number(lo)}"
        return "Enter a whole number"
    assert isinstance(t, msgspec.inspect.FloatType)
    if t.gt is not None:
        return f"Enter a number greater than {_number(t.gt)}"
    if t.ge == 0:
        return "Enter a number, 0 or more"
    if t.ge is not None:
        return f"Enter a number of at least {_number(t.ge)}"
    return "Enter a number"


_TEXT_EXPECTATIONS = {
    "url": "Enter an address starting with ws:// or wss://",
    "file": "Enter the path of a file",
    "path": "Enter a full folder path, starting with / or ~",
}


def expectation(key: str) -> str:
    """What a valid value of `key` is, said as what to do: "Enter a whole number from 0
    to 1000". The page, the bridge and the start-up error all say this."""
    optional, t = _bounds(key)
    if isinstance(t, msgspec.inspect.LiteralType):
        words = CHOICE_LABELS.get(key, {})
        return "Choose one of: " + ", ".join(
            words.get(c, str(c)) for c in _choices(key)
        )
    if isinstance(t, msgspec.inspect.BoolType):
        return "Choose on or off"
    if isinstance(t, msgspec.inspect.ListType):
        return "Enter one pattern per line"
    if isinstance(t, (msgspec.inspect.IntType, msgspec.inspect.FloatType)):
        text = _number_expectation(t)
    else:
        text = _TEXT_EXPECTATIONS.get(FIELDS[key].kind, "Enter a text")
    return text + (", or leave it empty" if optional else "")


def _choices(key: str) -> list[Any]:
    args = typing.get_args(typing.get_type_hints(Settings)[key])
    # Literal[...] | None: the Literal's own values
    if args and typing.get_origin(args[0]) is Literal:
        args = typing.get_args(args[0])
    return list(args)


def _schema_type(key: str) -> dict[str, Any]:
    optional, t = _bounds(key)
    out: dict[str, Any] = {"optional": optional}
    if isinstance(t, msgspec.inspect.LiteralType):
        choices = _choices(key)
        words = CHOICE_LABELS.get(key, {})
        out.update(
            type="choice",
            choices=choices,
            choiceLabels={c: words.get(c, str(c)) for c in choices},
        )
    elif isinstance(t, msgspec.inspect.BoolType):
        out["type"] = "bool"
    elif isinstance(t, msgspec.inspect.IntType):
        out.update(type="int", min=t.ge, max=t.le)
    elif isinstance(t, msgspec.inspect.FloatType):
        out.update(type="float", min=t.ge if t.ge is not None else t.gt)
        if t.gt is not None:
            out["minExclusive"] = True
    elif isinstance(t, msgspec.inspect.ListType):
        out["type"] = "list"
    else:
        out["type"] = "str"
    return out


def _spec(key: str) -> dict[str, Any]:
    field = FIELDS[key]
    live = key in LIVE_KEYS
    return {
        "key": key,
        **_schema_type(key),
        "group": field.group,
        "label": field.label,
        "help": field.help,
        "unit": field.unit,
        "kind": field.kind,
        "expect": expectation(key),
        "live": live,
        "applies": "Takes effect at once." if live else RESTART_NOTE,
    }


# In the Settings screen's order: by group, then as the keys are declared.
SCHEMA: list[dict[str, Any]] = sorted(
    (_spec(k) for k in KEYS), key=lambda s: GROUPS.index(s["group"])
)
_SPEC = {s["key"]: s for s in SCHEMA}

_AT = re.compile(r"^(?P<msg>.*?)(?: - at `\$\.(?P<key>[A-Za-z0-9_]+)[^`]*`)?$", re.S)


def _shown(value: Any) -> str:
    text = value if isinstance(value, str) else msgspec.json.encode(value).decode()
    return text if len(text) <= 40 else text[:39] + "…"


def _key_error(e: msgspec.ValidationError, data: dict[str, Any]) -> SettingsError:
    """msgspec's message, said in plain words after the key it is about:
    'max_restarts: Enter a whole number from 0 to 1000 (not “-1”)'."""
    text = str(e)
    unknown = re.match(r"Object contains unknown field `([^`]+)`", text)
    if unknown:
        key = unknown.group(1)
        return SettingsError(f"{key}: unknown setting (known: {', '.join(KEYS)})", key)
    m = _AT.match(text)
    key = m.group("key") if m else None
    msg = m.group("msg") if m else text
    if key is None:
        # From __post_init__: "key: message" already.
        head, _, rest = msg.partition(": ")
        if head in KEYS:
            return SettingsError(msg, head, rest)
        return SettingsError(msg)
    problem = expectation(key)
    value = data.get(key)
    if isinstance(value, str) and _SPEC[key]["type"] in ("int", "float", "list"):
        problem += f" (“{_shown(value)}” was given as text)"
    elif key in data:
        problem += f" (not “{_shown(value)}”)"
    return SettingsError(f"{key}: {problem}", key, problem)


def validate(data: dict[str, Any]) -> Settings:
    try:
        return msgspec.convert(data, Settings)
    except msgspec.ValidationError as e:
        raise _key_error(e, data) from None


def read_file(path: Path) -> dict[str, Any]:
    """The keys set in the file (no defaults filled in); {} when there is no file."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        return {}
    except (
        OSError,
        UnicodeDecodeError,
    ) as e:  # a folder in its place, no permission, not text
        raise SettingsFileError(
            f"{path}: cannot be read: {getattr(e, 'strerror', None) or e}"
        ) from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise SettingsError(f"{path}: not valid TOML: {e}") from None


def load_settings(path: Path) -> Settings:
    data = read_file(path)
    try:
        return validate(data)
    except SettingsError as e:
        raise SettingsError(f"{path}: {e}", e.key, e.problem) from None


def to_dict(settings: Settings) -> dict[str, Any]:
    return msgspec.to_builtins(settings)


DEFAULTS: dict[str, Any] = to_dict(Settings())


# --- writing --------------------------------------------------------------------------


_HEADER = """\
# dim-desktop settings (see README, Settings). Written by the Settings screen;
# editing by hand is fine too. Keys not listed take their defaults.

"""


def dump_toml(data: dict[str, Any]) -> str:
    """The keys set, in the Settings screen's order, under a comment saying what the
    file is."""
    return _HEADER + tomli_w.dumps(
        {key: data[key] for key in KEYS if data.get(key) is not None}
    )


def write_file(path: Path, data: dict[str, Any]) -> None:
    """Replace the file atomically: a reader sees the old file or the new one, never a
    mix."""
    text = dump_toml(data)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".settings-", suffix=".tmp", dir=path.parent)
    except OSError as e:
        raise SettingsFileError(f"{path}: cannot be saved: {e.strerror or e}") from None
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as e:
        Path(tmp).unlink(missing_ok=True)
        raise SettingsFileError(f"{path}: cannot be saved: {e.strerror or e}") from None
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def apply_changes(path: Path, changes: dict[str, Any]) -> Settings:
    """Validate the file with `changes` applied (a None value resets the key to its
    default) and write it. On any error nothing is written and SettingsError names the
    key."""
    if not isinstance(changes, dict) or not changes:
        raise SettingsError("changes must be an object of {key: value}")
    for key in changes:
        if key not in KEYS:
            raise SettingsError(
                f"{key}: unknown setting (known: {', '.join(KEYS)})", key
            )
    data = read_file(path)
    for key, value in changes.items():
        if isinstance(value, float) and not math.isfinite(value):
            raise SettingsError(
                f"{key}: Enter a finite number", key, "Enter a finite number"
            )
        if value is None or (
            value == "" and key in ("gateway_url", "token_file", "sync_root")
        ):
            data.pop(key, None)
        else:
            data[key] = value
    settings = validate(data)
    # Write the values as validated (an int given for a float key is written as a
    # float).
    normalized = to_dict(settings)
    write_file(path, {k: normalized[k] for k in data})
    return settings


# --- the bridge commands --------------------------------------------------------------


def describe(path: Path, running: Settings | None) -> dict[str, Any]:
    data = read_file(path)
    current = validate(data)
    values = to_dict(current)
    running_values = to_dict(running) if running is not None else values
    return {
        "path": str(path),
        "values": values,
        "defaults": DEFAULTS,
        "explicit": [k for k in KEYS if k in data],
        "schema": SCHEMA,
        # Saved but not in effect until dim-desktop starts again.
        "pendingRestart": [
            k for k in KEYS if k not in LIVE_KEYS and values[k] != running_values[k]
        ],
    }


def settings_command(
    command: str,
    args: dict[str, Any],
    path: Path,
    running: Settings | None,
    on_change=None,
) -> tuple[bool, Any]:
    """`get_settings` / `set_settings {changes}` → (ok, result) or (False, {code,
    message, key})."""
    try:
        if command == "set_settings":
            new = apply_changes(path, args.get("changes"))  # type: ignore[arg-type]
            if on_change is not None:
                on_change(new)
        return True, describe(path, running)
    except SettingsError as e:
        code = (
            "SETTINGS_FILE" if isinstance(e, SettingsFileError) else "INVALID_ARGUMENTS"
        )
        error = {"code": code, "message": f"{command}: {e}"}
        if e.key:
            error["key"] = e.key
        if e.problem:
            error["problem"] = e.problem
        return False, error


# --- the token ------------------------------------------------------------------------


def read_token_file(path: Path, what: str) -> str:
    """The first line of a token file that only its owner may read. `what` names the
    file's origin in errors: the setting `token_file`, or the flag `--token-file`."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
    except OSError as e:
        raise SettingsError(
            f"{what}: cannot read {path}: {e.strerror}", "token_file"
        ) from None
    with os.fdopen(fd, "rb") as f:
        mode = stat.S_IMODE(os.fstat(f.fileno()).st_mode)
        if os.name == "posix" and mode & 0o077:
            raise SettingsError(
                f"{what}: {path} can be read or changed by other users (its mode is "
                f"{mode:04o}), so the token in it is not secret; make it yours alone "
                f"with: chmod 600 {path}",
                "token_file",
            )
        text = f.read(64 * 1024).decode("utf-8", errors="replace")
    lines = text.splitlines()
    token = lines[0].strip() if lines else ""
    if not token:
        raise SettingsError(f"{what}: {path} is empty", "token_file")
    return token


def resolve_token(
    settings: Settings,
    flag: str | None,
    env: dict[str, str],
    config_dir: Path,
    *,
    token_file: str | None = None,
    gateway_url: str | None = None,
) -> str | None:
    """--token or --token-file (`token_file`) wins; otherwise what token_source says.
    The keychain holds one token per gateway address (`gateway_url`: the one in use)."""
    if flag:
        return flag
    if token_file:
        return read_token_file(
            Path(os.path.expanduser(token_file)).absolute(), "--token-file"
        )
    if settings.token_source == "env":
        return env.get("DIM_TOKEN") or None
    if settings.token_source == "file":
        p = Path(os.path.expanduser(settings.token_file or ""))
        if not p.is_absolute():
            p = config_dir / p
        return read_token_file(p, "token_file")
    if settings.token_source == "keyring" and gateway_url:
        # Imported here: keyring and its D-Bus client load only for those who use it.
        from dim_actors.config import keychain

        try:
            return keychain.read_token(gateway_url)
        except keychain.KeychainError as e:
            said = keychain.said_at_start(e)
            raise SettingsError(said, "token_source", said) from None
    return None
