"""The single-instance lock (`DimHome.acquire_instance_lock`), between real processes:
one holder at a time, the second told who holds it; dropped when the holder dies,
however it dies; never kept alive by a child of the holder. About 2 s."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from apphelpers import ROOT

from dim_actors.config.home import AlreadyRunning, DimHome, RuntimeInfo

# Takes the lock, starts a child that lives on (given every inheritable descriptor),
# prints the child's pid, then waits for its stdin to close.
HOLDER = textwrap.dedent(
    """
    import subprocess, sys
    from dim_actors.config.home import DimHome
    lock = DimHome.from_env().acquire_instance_lock()
    child = subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(120)"], close_fds=False
    )
    print(child.pid, flush=True)
    sys.stdin.read()
    """
)


def start_holder(home: DimHome) -> tuple[subprocess.Popen, int]:
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLDER],
        cwd=ROOT,
        env={**os.environ, "DIM_HOME": str(home.root)},
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()  # blocks until the lock is held
    assert line.strip().isdigit(), f"the holder failed: exit {proc.wait(60)}"
    return proc, int(line)


@pytest.fixture
def home(tmp_path: Path) -> DimHome:
    home = DimHome(tmp_path / "home")
    home.ensure()
    return home


@pytest.mark.parametrize("end", ["exit", "kill"])
def test_one_holder_at_a_time_and_not_its_children(home: DimHome, end: str):
    holder, child = start_holder(home)
    try:
        home.write_runtime(
            RuntimeInfo(holder.pid, "http://127.0.0.1:1/", "t", "sock", "ws://x")
        )
        with pytest.raises(AlreadyRunning) as caught:
            home.acquire_instance_lock()
        assert str(caught.value) == (
            f"dim-desktop is already running (pid {holder.pid}, UI at "
            f"http://127.0.0.1:1/) with DIM_HOME={home.root}"
        )
        if end == "exit":
            assert holder.stdin is not None
            holder.stdin.close()
        else:
            holder.kill()
        holder.wait(60)
        os.kill(child, 0)  # its child lives on, and holds nothing
        lock = home.acquire_instance_lock()
        lock.release()
        assert (home.run_dir / "instance.lock").stat().st_mode & 0o777 == 0o600
    finally:
        holder.kill()
        holder.wait(60)
        try:
            os.kill(child, signal.SIGKILL)
        except ProcessLookupError:
            pass
