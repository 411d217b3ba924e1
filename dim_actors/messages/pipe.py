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
_down_decoder = msgspec.msgpack.Decoder(PipeDown)

# The pipe's format, up: a frame is one item, or b"B" and a msgpack array of items. An
# item is an event (PipeEvent, an array: the hot path) or a control message nested as
# msgpack bytes (msgspec cannot mix array-like and map-like structs in one union, and
# control messages are rare). Items are encoded once, where they arise; a batch is their
# bytes joined behind an array header, so the supervisor decodes a whole batch with one
# call and allocates nothing per event but the event itself.
_Item = PipeEvent | bytes
_item_decoder = msgspec.msgpack.Decoder(_Item)
_batch_decoder = msgspec.msgpack.Decoder(list[_Item])
_BATCH = b"B"  # never the first byte of an item (a msgpack array or bin header)


def encode_up(msg: PipeEvent | Msg | bytes) -> bytes:
    """One item of the pipe format (bytes: a control message from `encode_control`)."""
    if type(msg) is PipeEvent or type(msg) is bytes:
        return _pipe_encoder.encode(msg)
    return _pipe_encoder.encode(_pipe_encoder.encode(msg))


def encode_control(msg: Msg) -> bytes:
    """A control message as `encode_items` takes it."""
    return _pipe_encoder.encode(msg)


def encode_items(items: list[PipeEvent | bytes]) -> bytes | bytearray:
    """One pipe frame of events and `encode_control`'s bytes, in order, encoded in one
    call."""
    if len(items) == 1:
        return _pipe_encoder.encode(items[0])
    buf = bytearray(_BATCH)
    _pipe_encoder.encode_into(items, buf, 1)
    return buf


def _array_header(n: int) -> bytes:
    if n < 16:
        return bytes((0x90 | n,))
    if n < 1 << 16:
        return b"\xdc" + n.to_bytes(2, "big")
    return b"\xdd" + n.to_bytes(4, "big")


def encode_batch(items: list[bytes]) -> bytes:
    """One pipe frame of items, each from `encode_up`, in order."""
    if len(items) == 1:
        return items[0]
    return b"".join((_BATCH + _array_header(len(items)), *items))


def decode_items(data: bytes) -> list[PipeEvent | bytes]:
    """One pipe frame's items, in order, in one decoder call: events, and control
    messages for `decode_control`."""
    if data[:1] == _BATCH:
        return _batch_decoder.decode(memoryview(data)[1:])
    return [_item_decoder.decode(data)]


def decode_control(item: bytes) -> Msg:
    return _up_decoder.decode(item)


def gateway_event(ev: PipeEvent) -> GatewayEvent:
    """The supervisor's message for an event off the pipe: its JSON wrapped, not copied."""
    return GatewayEvent(
        msgspec.Raw(ev.raw), ev.type, ev.sessionId, ev.seq, ev.replyTo, ev.recvNs
    )


def decode_up(data: bytes) -> list[GatewayEvent | Msg]:
    """One pipe frame's items as the supervisor's messages, in order (the connection
    actor converts as it routes, in one pass)."""
    return [
        gateway_event(it) if type(it) is PipeEvent else decode_control(it)  # type: ignore[arg-type]
        for it in decode_items(data)
    ]


def encode_down(msg: Msg) -> bytes:
    return _pipe_encoder.encode(msg)


def decode_down(data: bytes) -> Msg:
    return _down_decoder.decode(data)
