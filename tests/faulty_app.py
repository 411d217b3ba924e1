"""dim-desktop with the watcher's faults injected (tests/faulty_watcher.py):
`python -m faulty_app ARGS... --watcher-faults SPEC` (tests/ on PYTHONPATH), SPEC as
WatcherFaults.parse reads it, ARGS as dim-desktop's own."""

from __future__ import annotations

import sys

from faulty_watcher import FaultyWatcher, WatcherFaults


def split_faults(argv: list[str]) -> tuple[WatcherFaults, list[str]]:
    """The faults given with --watcher-faults SPEC (anywhere), and the rest of `argv`."""
    if "--watcher-faults" not in argv:
        return WatcherFaults(), argv
    i = argv.index("--watcher-faults")
    return WatcherFaults.parse(argv[i + 1]), argv[:i] + argv[i + 2 :]


# not under multiprocessing's spawn, which imports this module anew
if __name__ == "__main__":
    from dim_actors.app.main import main

    faults, rest = split_faults(sys.argv[1:])
    sys.exit(main(rest, replace={"watcher": FaultyWatcher.with_faults(faults)}))
