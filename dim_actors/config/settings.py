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

    def __init__(self, message: str, key: str | None = None):
        super().__init__(message)
        self.key = key


class SettingsFileError(SettingsError):
    """settings.toml cannot be read or saved (a folder in its place, no permission, a
    full disk): the file's fault, not the command's arguments."""


class Settings(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    gateway_url: str | None = None
    # Where the gateway token comes from when neither --token nor --token-file is given:
    # "env" ($DIM_TOKEN), "file" (the first line of token_file, a file only its owner
    # may read), or "flag".
    token_source: Literal["flag", "env", "file"] = "env"
    token_file: str | None = None
    # How dim-desktop shows its UI at start: the native window where it can, else the
    # browser.
    ui_open: Literal["auto", "window", "browser", "none"] = "auto"
    tray: bool = True
    native_notifications: bool = True
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
                f"gateway_url: must be a ws:// or wss:// URL, not {self.gateway_url!r}"
            )
        if self.token_source == "file" and not self.token_file:
            raise ValueError('token_file: needed when token_source = "file"')
        if self.stale_after_s and self.stale_after_s <= self.ping_interval_s:
            raise ValueError(
                f"stale_after_s: must be more than ping_interval_s ({self.ping_interval_s:g})"
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
                raise ValueError(f"{name}: must be a finite number")
        if self.sync_root is not None and not os.path.isabs(
            os.path.expanduser(self.sync_root)
        ):
            raise ValueError(
                f"sync_root: must be an absolute folder path (~ allowed), not {self.sync_root!r}"
            )
        for pattern in self.sync_extra_ignore:
            if not pattern.strip() or "\n" in pattern or "\x00" in pattern:
                raise ValueError(
                    f"sync_extra_ignore: {pattern!r} is not a pattern (empty, or a "
                    "line break in it)"
                )


# What the Settings screen shows: the help text of every key, and whether it needs a
# restart.
HELP: dict[str, str] = {
    "gateway_url": "Gateway (ws:// or wss://) used when --gateway is not given; "
    "empty: the embedded dev gateway",
    "token_source": "Where the gateway token comes from when --token is not given: "
    "env ($DIM_TOKEN), file, or flag (only --token)",
    "token_file": "File whose first line is the token (token_source = file), readable "
    "only by you (chmod 600); relative to DIM_HOME/config",
    "ui_open": "At start: auto (native window where available, else the browser), "
    "window, browser, or none",
    "tray": "Show a tray icon where the desktop has a system tray",
    "native_notifications": "Desktop notifications from the app when no window of it is focused",
    "sync_root": "Folder that session folders are synced under by default "
    "(<sync_root>/<session name>); absolute",
    "sync_auto_start": "Start syncing a session never synced before into its folder "
    "under sync_root when it is opened",
    "sync_extra_ignore": "Extra ignore patterns for sync (gitignore syntax, like a "
    ".gitignore at each folder's root), one per line",
    "sync_max_file_mb": "Local files larger than this (MiB) are not synced; the Sync "
    "panel lists them",
    "sync_min_free_mb": "Sync pauses when the sync folder's disk has less free space "
    "than this (MiB); empty: 64 MiB or 1% of the disk, whichever is smaller; 0: never",
    "max_restarts": "Restarts of one actor allowed within restart_period_s before escalating",
    "restart_period_s": "Window of the restart intensity, in seconds",
    "shutdown_timeout_s": "How long an actor may take to stop, in seconds",
    "hang_timeout_s": "One message handled for longer than this (seconds) means the actor is hung",
    "ping_interval_s": "Keepalive ping interval, in seconds",
    "stale_after_s": "Silence (seconds) after which the gateway link is dead; 0: from "
    "the gateway's heartbeat (1.5 times it, at least 10 s); otherwise more than "
    "ping_interval_s",
    "request_timeout_s": "How long a command waits for the gateway's answer, in seconds",
    "send_rate_limit": "Messages the client sends per send_rate_window_s at most (the "
    "gateway's limit; 0: no pacing)",
    "send_rate_window_s": "Window of send_rate_limit, in seconds",
    "uplink_memory_limit": "Bytes of events the connection process buffers in memory "
    "before spilling to disk",
    "log_ring_size": "Messages kept in memory per actor for dimctl logs",
    "log_max_bytes": "Size at which an actor's message log file is rotated, in bytes",
    "log_keep": "Rotated message log files kept per actor",
}
# applied at once; every other key at the next start
LIVE_KEYS = frozenset({"native_notifications"})
KEYS: tuple[str, ...] = Settings.__struct_fields__


def _schema_type(key: str) -> dict[str, Any]:
    info = msgspec.inspect.type_info(Settings)
    assert isinstance(info, msgspec.inspect.StructType)
    field = next(f for f in info.fields if f.name == key)
    t = field.type
    optional = False
    if isinstance(t, msgspec.inspect.UnionType):
        inner = [x for x in t.types if not isinstance(x, msgspec.inspect.NoneType)]
        optional, t = True, inner[0]
    out: dict[str, Any] = {"optional": optional}
    if isinstance(t, msgspec.inspect.LiteralType):
        out.update(
            type="choice",
            choices=list(typing.get_args(typing.get_type_hints(Settings)[key])),
        )
    elif isinstance(t, msgspec.inspect.BoolType):
        out["type"] = "bool"
    elif isinstance(t, msgspec.inspect.IntType):
        out.update(type="int", min=t.ge)
    elif isinstance(t, msgspec.inspect.FloatType):
        out.update(type="float")
    elif isinstance(t, msgspec.inspect.ListType):
        out["type"] = "list"
    else:
        out["type"] = "str"
    return out


SCHEMA: list[dict[str, Any]] = [
    {"key": k, **_schema_type(k), "help": HELP.get(k, ""), "live": k in LIVE_KEYS}
    for k in KEYS
]

_AT = re.compile(r"^(?P<msg>.*?)(?: - at `\$\.(?P<key>[A-Za-z0-9_]+)[^`]*`)?$", re.S)


def _key_error(e: msgspec.ValidationError, data: dict[str, Any]) -> SettingsError:
    """msgspec's message, rephrased to start with the key: 'max_restarts: Expected `int`
    >= 0, got -1'."""
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
        head = msg.split(":", 1)[0]
        return SettingsError(msg, head if head in KEYS else None)
    msg = msg.replace("`", "")
    choices = next((f.get("choices") for f in SCHEMA if f["key"] == key), None)
    if choices and "enum" in msg:
        msg = f"must be one of {', '.join(choices)}, not {data.get(key)!r}"
    elif key in data and "got" not in msg:
        msg += f", got {data[key]!r}"
    return SettingsError(f"{key}: {msg}", key)


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
        raise SettingsError(f"{path}: {e}", e.key) from None


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
            raise SettingsError(f"{key}: must be a finite number", key)
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
) -> str | None:
    """--token or --token-file (`token_file`) wins; otherwise what token_source says."""
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
    return None
