"""The handshake's checks of what the gateway says (dim_actors/connection/process/handshake.py)."""

from __future__ import annotations

import pytest

from dim_actors.connection import staleness
from dim_actors.connection.process.handshake import (
    AuthFailed,
    ProtocolVersionMismatch,
    RetryLater,
    check_version,
    heartbeat,
    identity_of,
    refusal,
    requires_auth,
)
from dim_actors.wire import protocol


@pytest.mark.parametrize(
    "version, protocol_version, warns, bad, newer",
    [
        (1, 1, False, False, False),
        (1.0, 1, False, False, False),
        (1.5, 1, False, False, False),  # a minor version: still ours
        (2, 2, True, False, True),  # newer: v1 messages, and the user is told
        (7.5, 7, True, False, True),
        (1e12, 1 << 31, True, False, True),  # clamped, not an overflow
        (None, None, True, True, False),  # not said
        ("1", None, True, True, False),
        (True, None, True, True, False),  # a bool is no number
        (float("nan"), None, True, True, False),
    ],
)
def test_the_welcome_version_is_read_or_reported(
    version, protocol_version, warns, bad, newer
):
    check = check_version(version)
    assert check.protocol_version == protocol_version
    assert (check.warning is not None) == warns
    assert (check.bad is not None) == bad
    assert check.newer == newer
    if warns:
        assert check.warning.startswith("The gateway")


@pytest.mark.parametrize("version", [0, 0.9, -1])
def test_an_older_protocol_version_ends_the_attempt_for_good(version):
    with pytest.raises(ProtocolVersionMismatch, match="this client speaks"):
        check_version(version)


@pytest.mark.parametrize(
    "value, authenticate, bad",
    [
        (True, True, False),
        (False, False, False),  # only an explicit false skips it
        (None, True, True),
        (0, True, True),  # 0 is not false here
        ("false", True, True),
    ],
)
def test_authentication_is_skipped_only_on_an_explicit_false(value, authenticate, bad):
    assert requires_auth(value)[0] == authenticate
    assert (requires_auth(value)[1] is not None) == bad


@pytest.mark.parametrize(
    "interval, heartbeat_ms, bad",
    [
        (30000, 30000, False),
        (1500.7, 1500, False),
        (0, None, True),
        (-5, None, True),
        (float("inf"), None, True),
        ("30000", None, True),
        (True, None, True),
        (None, None, True),
    ],
)
def test_the_heartbeat_interval_is_used_when_it_is_a_positive_number(
    interval, heartbeat_ms, bad
):
    got, reason = heartbeat(interval)
    assert got == heartbeat_ms
    assert (reason is not None) == bad
    if bad:
        assert f"{staleness.DEFAULT_HEARTBEAT_MS} ms" in reason


@pytest.mark.parametrize(
    "value, identity, bad",
    [
        (None, None, False),
        ({"userId": "u1"}, {"userId": "u1"}, False),
        ({}, {}, False),
        ("u1", None, True),
        (["u1"], None, True),
    ],
)
def test_the_identity_is_kept_only_when_it_is_an_object(value, identity, bad):
    got, reason = identity_of(value)
    assert got == identity
    assert (reason is not None) == bad


@pytest.mark.parametrize(
    "msg, kind, delay_s, bad",
    [
        ({"code": "AUTH_FAILED", "message": "no"}, AuthFailed, None, False),
        ({"code": "AUTH_FAILED"}, AuthFailed, None, False),
        ({"code": "AUTH_RATE_LIMITED", "retryAfterMs": 2500}, RetryLater, 2.5, False),
        ({"code": "AUTH_RATE_LIMITED", "retryAfterMs": 10}, RetryLater, 0.1, False),
        ({"code": "AUTH_RATE_LIMITED", "retryAfterMs": 9e12}, RetryLater, 300.0, False),
        ({"code": "AUTH_RATE_LIMITED"}, RetryLater, 1.0, True),
        ({"code": "AUTH_RATE_LIMITED", "retryAfterMs": "soon"}, RetryLater, 1.0, True),
        ({"code": "HANDSHAKE_TIMEOUT"}, protocol.ProtocolError, None, False),
        ({"code": 42, "message": "odd"}, protocol.ProtocolError, None, True),
        ({}, protocol.ProtocolError, None, True),
    ],
)
def test_a_handshake_error_ends_the_attempt_as_its_code_says(msg, kind, delay_s, bad):
    error, reason = refusal(msg)
    assert type(error) is kind
    assert (reason is not None) == bad
    if delay_s is not None:
        assert isinstance(error, RetryLater) and error.delay_s == delay_s
    if kind is protocol.ProtocolError:
        assert error.code == (
            msg["code"] if isinstance(msg.get("code"), str) else "HANDSHAKE"
        )
