"""Run as a program: a tray icon updating as fast as it can while the main thread makes
X round trips holding the GIL, as PyQt does across the native window's X calls. Prints
"done" and exits 0 when every round trip was answered; an icon that grabs the X server
and then needs the GIL to let go deadlocks here (the caller's timeout then kills it).

    python tests/xgil_probe.py xtray|pystray DISPLAY SECONDS
"""

from __future__ import annotations

import ctypes
import os
import sys
import threading
import time


def main() -> None:
    which, display, seconds = sys.argv[1], sys.argv[2], float(sys.argv[3])
    os.environ["DISPLAY"] = display
    from dim_actors.desktop.tray import COLOURS, icon_image

    images = [icon_image(state) for state in COLOURS]
    if which == "xtray":
        from dim_actors.desktop.xtray import XTrayIcon

        icon = XTrayIcon(images[0], "probe", lambda *_: None, display_name=display)
        icon.start()

        def update(i: int) -> None:
            icon.set_image(images[i % len(images)])
    else:
        import pystray._xorg

        picon = pystray._xorg.Icon("probe", images[0])
        picon.run_detached()

        def update(i: int) -> None:
            picon.icon = images[i % len(images)]

    stop = threading.Event()

    def updates() -> None:
        i = 0
        while not stop.is_set():
            update(i)
            i += 1

    threading.Thread(target=updates, daemon=True).start()
    # PyDLL keeps the GIL held through each call.
    x11 = ctypes.PyDLL("libX11.so.6")
    x11.XOpenDisplay.restype = ctypes.c_void_p
    x11.XOpenDisplay.argtypes = [ctypes.c_char_p]
    x11.XSync.argtypes = [ctypes.c_void_p, ctypes.c_int]
    dpy = x11.XOpenDisplay(display.encode())
    if not dpy:
        sys.exit(f"cannot open {display} with libX11")
    trips = 0
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        x11.XSync(dpy, 0)
        trips += 1
    stop.set()
    print(f"done: {trips} round trips", flush=True)
    os._exit(0)  # the icon's threads are daemons; nothing to tidy in a probe


if __name__ == "__main__":
    main()
