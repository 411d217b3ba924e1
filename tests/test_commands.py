"""Local command arguments (dim_actors/router/commands.py), the bridge's body decoding
(dim_actors/uibridge/http.py) and the connection actor's outbox id check: pure
functions, table-driven."""

from __future__ import annotations

import pytest

from dim_actors.connection.actor import outbox_id_problem
from dim_actors.messages import SYNC_COMMANDS
from dim_actors.router import commands
from dim_actors.router.router import LOCAL_COMMANDS
from dim_actors.uibridge.http import MAX_JSON_DEPTH, BadBody, decode_args
from dim_actors.wire.protocol import CLIENT_MESSAGES

BIG = 2**70
LONG_NAME = "/tmp/" + "é" * 128  # 256 bytes in one name

# (command, args, expected): a Struct when valid, else a fragment of the message, which
# names the field.
CASES = [
    ("get_state", {}, commands.NoArgs()),
    ("get_state", {"x": 1}, "get_state: Object contains unknown field `x`"),
    ("get_state", None, "get_state: Expected `object`, got `null`"),
    ("actor_status", {}, commands.NoArgs()),
    ("gateway_disconnect", {}, commands.NoArgs()),
    ("get_settings", {}, commands.NoArgs()),
    ("sync_pause", {}, commands.NoArgs()),
    ("sync_resume", {}, commands.NoArgs()),
    ("restart_actor", {"name": "journal"}, commands.ActorArgs(name="journal")),
    (
        "restart_actor",
        {"name": ["x"]},
        "restart_actor: name: Expected `str`, got `array`",
    ),
    (
        "restart_actor",
        {"name": {}},
        "restart_actor: name: Expected `str`, got `object`",
    ),
    (
        "restart_actor",
        {"name": ""},
        "restart_actor: name: Expected `str` of length >= 1",
    ),
    ("restart_actor", {}, "restart_actor: Object missing required field `name`"),
    ("actor_logs", {"name": "router"}, commands.ActorLogs(name="router")),
    (
        "actor_logs",
        {"name": "router", "types": ["invoke"], "limit": 3, "since": 5},
        commands.ActorLogs(name="router", types=["invoke"], limit=3, since=5.0),
    ),
    ("actor_logs", {"name": ["x"]}, "actor_logs: name: Expected `str`, got `array`"),
    (
        "actor_logs",
        {"name": "router", "types": [{}]},
        "actor_logs: types[0]: Expected `str`, got `object`",
    ),
    (
        "actor_logs",
        {"name": "router", "types": [["a"]]},
        "actor_logs: types[0]: Expected `str`, got `array`",
    ),
    (
        "actor_logs",
        {"name": "router", "types": "invoke"},
        "actor_logs: types: Expected `array | null`, got `str`",
    ),
    (
        "actor_logs",
        {"name": "router", "since": "x"},
        "actor_logs: since: Expected `float | null`, got `str`",
    ),
    (
        "actor_logs",
        {"name": "router", "since": float("nan")},
        "actor_logs: since: Expected `float` >= 0.0",
    ),
    (
        "actor_logs",
        {"name": "router", "limit": 0},
        "actor_logs: limit: Expected `int` >= 1",
    ),
    (
        "actor_logs",
        {"name": "router", "limit": True},
        "actor_logs: limit: Expected `int`, got `bool`",
    ),
    (
        "actor_logs",
        {"name": "router", "limit": BIG},
        "actor_logs: limit: Expected `int` <= 9223372036854775807",
    ),
    ("outbox_cancel", {"id": 7}, commands.OutboxCancel(id=7)),
    (
        "outbox_cancel",
        {"id": BIG},
        "outbox_cancel: id: Expected `int` <= 9223372036854775807",
    ),
    (
        "outbox_cancel",
        {"id": 2**63},
        "outbox_cancel: id: Expected `int` <= 9223372036854775807",
    ),
    ("outbox_cancel", {"id": "7"}, "outbox_cancel: id: Expected `int`, got `str`"),
    ("outbox_cancel", {"id": 1.5}, "outbox_cancel: id: Expected `int`, got `float`"),
    ("outbox_cancel", {"id": 0}, "outbox_cancel: id: Expected `int` >= 1"),
    (
        "gateway_connect",
        {"url": "ws://127.0.0.1:1/ws"},
        commands.GatewayConnect(url="ws://127.0.0.1:1/ws"),
    ),
    (
        "gateway_connect",
        {"url": "wss://h/ws", "token": "t"},
        commands.GatewayConnect(url="wss://h/ws", token="t"),
    ),
    (
        "gateway_connect",
        {"url": "http://h"},
        "gateway_connect: url must be a ws:// or wss:// URL",
    ),
    (
        "gateway_connect",
        {"url": ["ws://h"]},
        "gateway_connect: url: Expected `str`, got `array`",
    ),
    (
        "gateway_connect",
        {"url": "ws://h", "token": 5},
        "gateway_connect: token: Expected `str | null`, got `int`",
    ),
    ("save_token", {"token": "kc-1"}, commands.SaveToken(token="kc-1")),
    ("save_token", {}, "save_token: Object missing required field `token`"),
    ("save_token", {"token": 5}, "save_token: token: Expected `str`, got `int`"),
    ("save_token", {"token": " "}, "save_token: token: Enter the gateway token"),
    (
        "save_token",
        {"token": "kc-1\nkc-2"},
        "save_token: token: Enter the token alone, without spaces around it",
    ),
    (
        "save_token",
        {"token": "x" * 4097},
        "save_token: token: Expected `str` of length <= 4096",
    ),
    (
        "set_settings",
        {"changes": {"max_restarts": 4}},
        commands.SetSettings(changes={"max_restarts": 4}),
    ),
    (
        "set_settings",
        {"changes": []},
        "set_settings: changes: Expected `object`, got `array`",
    ),
    ("start_sync", {"sessionId": "s"}, commands.StartSync(sessionId="s")),
    (
        "start_sync",
        {"sessionId": "s", "localDir": "/tmp/x", "confirm": True},
        commands.StartSync(sessionId="s", localDir="/tmp/x", confirm=True),
    ),
    (
        "start_sync",
        {"localDir": "/tmp/x"},
        "start_sync: Object missing required field `sessionId`",
    ),
    (
        "start_sync",
        {"sessionId": {}},
        "start_sync: sessionId: Expected `str`, got `object`",
    ),
    (
        "start_sync",
        {"sessionId": "s", "confirm": "yes"},
        "start_sync: confirm: Expected `bool`, got `str`",
    ),
    (
        "start_sync",
        {"sessionId": "s", "localDir": "/tmp/a\x00b"},
        "start_sync: localDir must not contain a NUL",
    ),
    (
        "start_sync",
        {"sessionId": "s", "localDir": LONG_NAME},
        "start_sync: localDir has a name longer than 255 bytes",
    ),
    (
        "start_sync",
        {"sessionId": "s", "localDir": "/a" * 2100},
        "start_sync: localDir is longer than 4096 bytes",
    ),
    (
        "start_sync",
        {"sessionId": "s", "sessionName": "n"},
        "start_sync: Object contains unknown field `sessionName`",
    ),
    ("stop_sync", {"sessionId": "s"}, commands.SessionArgs(sessionId="s")),
    ("sync_statuses", {}, commands.NoArgs()),
    (
        "sync_statuses",
        {"sessionId": "s"},
        "sync_statuses: Object contains unknown field `sessionId`",
    ),
    (
        "sync_status",
        {"sessionId": ""},
        "sync_status: sessionId: Expected `str` of length >= 1",
    ),
    (
        "sync_defaults",
        {"sessionId": 3},
        "sync_defaults: sessionId: Expected `str`, got `int`",
    ),
    (
        "resolve_conflict",
        {"sessionId": "s", "path": "a.md", "resolution": "merged"},
        commands.ResolveConflict(sessionId="s", path="a.md", resolution="merged"),
    ),
    (
        "resolve_conflict",
        {"sessionId": "s", "path": "a.md", "resolution": "mine"},
        "resolve_conflict: resolution: Invalid enum value 'mine'",
    ),
    (
        "resolve_conflict",
        {"sessionId": "s", "path": "a\x00", "resolution": "merged"},
        "resolve_conflict: path must not contain a NUL",
    ),
    (
        "get_turns",
        {"sessionId": "s", "beforeTurnId": "t"},
        commands.GetTurns(sessionId="s", beforeTurnId="t", limit=100),
    ),
    (
        "get_turns",
        {"sessionId": "s", "beforeTurnId": "t", "limit": 10_001},
        "get_turns: limit: Expected `int` <= 10000",
    ),
    ("get_turns", {"sessionId": "s"}, "get_turns: Object missing required field"),
    ("launch_missiles", {}, "launch_missiles: not a local command"),
]


@pytest.mark.parametrize(
    "command, args, expected", CASES, ids=[f"{c[0]}-{i}" for i, c in enumerate(CASES)]
)
def test_validate(command, args, expected):
    got = commands.validate(command, args)
    if isinstance(expected, str):
        assert isinstance(got, str) and got.startswith(expected), got
    else:
        assert got == expected


def test_every_local_and_sync_command_has_its_struct_and_none_is_a_gateway_command():
    assert set(commands.ARGS) >= SYNC_COMMANDS, (
        "a sync command without its argument Struct"
    )
    assert {
        "get_state",
        "get_turns",
        "gateway_connect",
        "gateway_disconnect",
        "actor_status",
        "restart_actor",
        "actor_logs",
        "outbox_cancel",
        "get_settings",
        "set_settings",
        "save_token",
        "search_sessions",
        "list_folders",
        "mark_seen",
        "open_window",
    } == LOCAL_COMMANDS
    assert not set(commands.ARGS) & set(CLIENT_MESSAGES)


def test_deeply_nested_arguments_are_refused_not_raised():
    deep: object = "x"
    for _ in range(5000):
        deep = [deep]
    assert commands.validate(
        "set_settings", {"changes": {"k": deep}}
    ) == commands.SetSettings(changes={"k": deep})
    got = commands.validate("actor_logs", {"name": "router", "types": deep})
    assert isinstance(got, str) and got.startswith("actor_logs: ")


def nested(depth: int) -> bytes:
    return b'{"a":' + b"[" * (depth - 1) + b"]" * (depth - 1) + b"}"


def nested_value(depth: int) -> object:
    value: list = []
    for _ in range(depth - 1):
        value = [value]
    return value


# (body, expected): the arguments, or (code, a fragment of the message).
BODIES = [
    (b"", {}),
    (b"  \n", {}),
    (b'{"name": "router"}', {"name": "router"}),
    (b'{"a": "\\ud83d\\ude00"}', {"a": "\U0001f600"}),
    (nested(MAX_JSON_DEPTH), {"a": nested_value(MAX_JSON_DEPTH - 1)}),
    (
        nested(MAX_JSON_DEPTH + 1),
        ("INVALID_JSON", f"nested more than {MAX_JSON_DEPTH} levels deep"),
    ),
    (
        b"[" * 100_000 + b"]" * 100_000,
        ("INVALID_JSON", f"nested more than {MAX_JSON_DEPTH} levels deep"),
    ),
    (
        b'{"a":' + b"[" * 100_000 + b"]" * 100_000 + b"}",
        ("INVALID_JSON", "nested more than"),
    ),
    (b"{not json", ("INVALID_JSON", "not valid JSON")),
    (b'{"a": "\\ud83d"}', ("INVALID_JSON", "surrogate pair")),
    (b'{"a": "\xff"}', ("INVALID_JSON", "not valid JSON")),
    (b'{"a": NaN}', ("INVALID_JSON", "not valid JSON")),
    (b'{"a": 1e400}', ("INVALID_JSON", "not valid JSON")),
    (b"[1, 2]", ("INVALID_ARGUMENTS", "must be a JSON object")),
    (b'"text"', ("INVALID_ARGUMENTS", "must be a JSON object")),
]


@pytest.mark.parametrize(
    "body, expected", BODIES, ids=[str(i) for i in range(len(BODIES))]
)
def test_decode_args(body, expected):
    if isinstance(expected, dict):
        assert decode_args(body) == expected
        return
    with pytest.raises(BadBody) as e:
        decode_args(body)
    code, fragment = expected
    assert e.value.code == code and fragment in e.value.message, e.value.message


@pytest.mark.parametrize(
    "value, problem",
    [
        (1, None),
        (2**63 - 1, None),
        (2**63, "between 1 and"),
        (2**70, "between 1 and"),
        (0, "between 1 and"),
        (-5, "between 1 and"),
        (True, "an integer, not bool"),
        ("3", "an integer, not str"),
        (None, "an integer, not"),
    ],
)
def test_outbox_id_problem(value, problem):
    got = outbox_id_problem(value)
    assert got is None if problem is None else problem in got


NASTY = [
    2**70,
    -(2**70),
    2**64,
    [2**70],
    {"a": 2**70},
    {},
    [],
    [{}],
    "",
    "x",
    True,
    None,
    1.5,
    float("inf"),
    float("nan"),
    {"a": [[[{}]]]},
    ["x", ["y"]],
]


@pytest.mark.parametrize("command", sorted(CLIENT_MESSAGES))
def test_gateway_command_arguments_are_refused_never_raised(command):
    """Gateway commands go through protocol.build_client_message: a wrong value in any
    field is a ProtocolError (the router's INVALID_ARGUMENTS), whatever the value."""
    from dim_actors.wire.protocol import ProtocolError, build_client_message

    fields = [*CLIENT_MESSAGES[command].__struct_fields__, "type", "unknown"]
    for base in ({}, dict.fromkeys(CLIENT_MESSAGES[command].__struct_fields__, "s")):
        for field in fields:
            for value in NASTY:
                try:
                    assert isinstance(
                        build_client_message(command, {**base, field: value}), bytes
                    )
                except ProtocolError:
                    pass
