"""Ending a websocket-client connection from any thread."""

from __future__ import annotations

import socket

import websocket


def hard_close(ws: websocket.WebSocket | None) -> None:
    """Shut the socket down first, so a thread blocked reading it wakes at once; then
    close."""
    if ws is None or ws.sock is None:
        return
    try:
        ws.sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    try:
        ws.close(timeout=0.2)
    # closing a dead socket may fail in many ways; it is gone either way
    except Exception:
        pass
