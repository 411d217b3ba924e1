"""Framing across the pipe between the connection actor and its process (msgpack)."""

from __future__ import annotations

import msgspec

from dim_actors.messages.base import Msg
from dim_actors.messages.connection import (
    BadFrame,
    CancelQueued,
    CatchupGap,
    CommandFailed,
    Connect,
    ConnectionState,
    Disconnect,
    GatewayEvent,
    OutboxChanged,
    Queued,
    Resync,
    ResyncStarted,
    SendFrame,
    SessionGone,
    Shutdown,
)
from dim_actors.messages.replication import (
    AckSequence,
    ContentReady,
    FetchContent,
    ReplicationState,
    ReplicationUpdate,
    SendWriteBack,
    StartReplication,
    StopReplication,
    WriteBackOutcome,
)

# Raw is not msgpack-encodable as JSON text, so gateway events cross the pipe as
# PipeEvent with plain bytes and become GatewayEvent (Raw, zero-copy) on the supervisor
# side.


class PipeEvent(msgspec.Struct, array_like=True):
    raw: bytes
    type: str
    sessionId: str | None
    seq: int | None
    replyTo: int | None
    recvNs: int


_UpControl = (
    ConnectionState
    | CommandFailed
    | Queued
    | OutboxChanged
    | BadFrame
    | ResyncStarted
    | CatchupGap
    | SessionGone
    | ReplicationUpdate
    | ReplicationState
    | WriteBackOutcome
    | ContentReady
)
PipeDown = (
    Connect
    | Disconnect
    | SendFrame
    | CancelQueued
    | Shutdown
    | Resync
    | StartReplication
    | StopReplication
    | SendWriteBack
    | FetchContent
    | AckSequence
)

_pipe_encoder = msgspec.msgpack.Encoder()
_up_decoder = msgspec.msgpack.Decoder(_UpControl)
_event_decoder = msgspec.msgpack.Decoder(PipeEvent)
_down_decoder = msgspec.msgpack.Decoder(PipeDown)


def encode_up(msg: PipeEvent | Msg) -> bytes:
    # One leading byte tells an event (the hot path, array-encoded) from a control
    # message.
    if isinstance(msg, PipeEvent):
        return b"E" + _pipe_encoder.encode(msg)
    return b"C" + _pipe_encoder.encode(msg)


def encode_batch(frames: list[bytes]) -> bytes:
    return b"B" + _pipe_encoder.encode(frames)


_batch_decoder = msgspec.msgpack.Decoder(list[bytes])


def decode_up(data: bytes) -> list[GatewayEvent | Msg]:
    """One pipe frame holds one item or a batch of them, in order."""
    if data[:1] == b"B":
        return [_decode_one(f) for f in _batch_decoder.decode(memoryview(data)[1:])]
    return [_decode_one(data)]


def _decode_one(data: bytes) -> GatewayEvent | Msg:
    if data[:1] == b"E":
        ev = _event_decoder.decode(memoryview(data)[1:])
        return GatewayEvent(
            raw=msgspec.Raw(ev.raw),
            type=ev.type,
            sessionId=ev.sessionId,
            seq=ev.seq,
            replyTo=ev.replyTo,
            recvNs=ev.recvNs,
        )
    return _up_decoder.decode(memoryview(data)[1:])


def encode_down(msg: Msg) -> bytes:
    return _pipe_encoder.encode(msg)


def decode_down(data: bytes) -> Msg:
    return _down_decoder.decode(data)
