"""`python -m bench.startup_trace ARGS...`: `dim-desktop ARGS...` that writes, as it
starts, when each step of the supervisor's start ended (wall clock, one JSON line each)
to the file named by $DIM_BENCH_TRACE. For bench/startup.py's breakdown only: the
figures it reports come from the plain `python -m dim_actors.app`.
"""

from __future__ import annotations

import time

T0 = time.time()  # the interpreter is up, nothing of ours imported yet

import json  # noqa: E402
import os  # noqa: E402
import sys  # noqa: E402
from collections.abc import Callable  # noqa: E402
from typing import Any  # noqa: E402

_out = open(os.environ["DIM_BENCH_TRACE"], "a")  # noqa: SIM115


def mark(step: str) -> None:
    _out.write(json.dumps({"step": step, "t": time.time()}) + "\n")
    _out.flush()


def after(owner: Any, name: str, step: str) -> None:
    """Mark `step` each time owner.name returns."""
    original: Callable[..., Any] = getattr(owner, name)

    def traced(*args: Any, **kwargs: Any) -> Any:
        try:
            return original(*args, **kwargs)
        finally:
            mark(step)

    setattr(owner, name, traced)


def main() -> int:
    mark("interpreter")
    _ = T0
    from dim_actors.app import main as app_main

    mark("imports")
    from dim_actors.app.runtime import SupervisorRuntime
    from dim_actors.config.home import DimHome
    from dim_actors.desktop import Desktop

    after(DimHome, "acquire_instance_lock", "home ready and locked")
    after(app_main, "load_configuration", "settings loaded")
    after(SupervisorRuntime, "start", "runtime.start returned")
    after(SupervisorRuntime, "wait_started", "every actor started")
    after(DimHome, "write_runtime", "runtime.json written")
    after(Desktop, "__init__", "desktop ready (window support known)")
    return app_main.main(sys.argv[1:])


if __name__ == "__main__":
    sys.exit(main())
