"""A desktop notification service (org.freedesktop.Notifications) on a real D-Bus session bus,
for the tests: what a desktop's notification daemon does, minus the drawing.

    python tests/notification_service.py LOG

It owns the name on the bus in $DBUS_SESSION_BUS_ADDRESS, answers GetCapabilities,
GetServerInformation and Notify, and appends each notification to LOG as a JSON line. A
notification whose summary or body mentions CLICK is "clicked" at once: the service emits
ActionInvoked(id, "default"), as a daemon does when the user clicks it. It prints "ready" once the
name is its own.
"""

from __future__ import annotations

import json
import sys

from jeepney import (
    DBusAddress,
    HeaderFields,
    MessageType,
    new_error,
    new_method_return,
    new_signal,
)
from jeepney.bus_messages import message_bus
from jeepney.io.blocking import open_dbus_connection

NAME = "org.freedesktop.Notifications"
PATH = "/org/freedesktop/Notifications"


def main(log_path: str) -> None:
    conn = open_dbus_connection(bus="SESSION")
    reply = conn.send_and_get_reply(message_bus.RequestName(NAME, 4))  # 4: DO_NOT_QUEUE
    if reply.body[0] != 1:  # 1: PRIMARY_OWNER
        sys.exit(f"could not own {NAME}: {reply.body[0]}")
    print("ready", flush=True)
    emitter = DBusAddress(PATH, interface=NAME)
    next_id = 0
    while True:
        msg = conn.receive()
        if msg.header.message_type != MessageType.method_call:
            continue
        member = msg.header.fields.get(HeaderFields.member)
        if member == "GetCapabilities":
            conn.send(new_method_return(msg, "as", (["actions", "body"],)))
        elif member == "GetServerInformation":
            conn.send(
                new_method_return(
                    msg, "ssss", ("test-notifications", "dim", "1", "1.2")
                )
            )
        elif member == "Notify":
            app_name, _replaces, _icon, summary, body, actions, _hints, timeout = (
                msg.body
            )
            next_id += 1
            with open(log_path, "a") as f:
                f.write(
                    json.dumps(
                        {
                            "id": next_id,
                            "appName": app_name,
                            "summary": summary,
                            "body": body,
                            "actions": list(actions),
                            "timeout": timeout,
                        }
                    )
                    + "\n"
                )
            conn.send(new_method_return(msg, "u", (next_id,)))
            if "CLICK" in summary or "CLICK" in body:
                conn.send(
                    new_signal(emitter, "ActionInvoked", "us", (next_id, "default"))
                )
        elif member == "CloseNotification":
            conn.send(new_method_return(msg))
        else:
            conn.send(
                new_error(
                    msg,
                    "org.freedesktop.DBus.Error.UnknownMethod",
                    "s",
                    (f"no method {member}",),
                )
            )


if __name__ == "__main__":
    main(sys.argv[1])
