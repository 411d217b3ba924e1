"""The supervisor's buffered reader of the connection process's pipe
(dim_actors/connection/pipeframes.py) reads exactly what multiprocessing's send_bytes
wrote: every size, in order, and EOF when the other end closes."""

from __future__ import annotations

import multiprocessing
import threading

import pytest

from dim_actors.connection.pipeframes import READ_AHEAD, PipeFrames


def sizes() -> list[int]:
    # empty, tiny, around multiprocessing's 16 KiB split and the 64 KiB read-ahead, big
    return [
        0,
        1,
        5,
        16383,
        16384,
        16385,
        READ_AHEAD - 4,
        READ_AHEAD,
        READ_AHEAD + 1,
        3 * READ_AHEAD + 7,
        1_000_000,
    ] + [17] * 2_000


def test_frames_of_every_size_arrive_whole_and_in_order():
    reader, writer = multiprocessing.Pipe(duplex=True)
    sent = [bytes([i % 251]) * n for i, n in enumerate(sizes())]

    def send() -> None:
        for frame in sent:
            writer.send_bytes(frame)
        writer.close()

    th = threading.Thread(target=send)
    th.start()
    frames = PipeFrames(reader)
    got = [frames.recv_bytes() for _ in sent]
    th.join(30)
    assert got == sent
    with pytest.raises(EOFError):
        frames.recv_bytes()
    reader.close()


def test_a_frame_cut_by_the_end_of_the_pipe_is_eof():
    reader, writer = multiprocessing.Pipe(duplex=True)
    writer.send_bytes(b"whole")
    # a length that promises more than ever comes
    writer._send(b"\x00\x00\x00\x10abc")  # type: ignore[attr-defined]
    writer.close()
    frames = PipeFrames(reader)
    assert frames.recv_bytes() == b"whole"
    with pytest.raises(EOFError):
        frames.recv_bytes()
    reader.close()


def test_a_closed_connection_is_an_oserror_not_a_read_of_another_file():
    reader, writer = multiprocessing.Pipe(duplex=True)
    frames = PipeFrames(reader)
    reader.close()
    with pytest.raises(OSError):
        frames.recv_bytes()
    writer.close()
