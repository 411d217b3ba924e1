"""A pure-Python sampling profiler for bench/profile.py (py-spy cannot attach to every
Python build).

Loaded by every Python process started with this directory on PYTHONPATH and
DIM_BENCH_SAMPLE=DIR set (the spawned connection process inherits both): a daemon thread
samples every thread's stack every 2 ms and rewrites DIR/<pid>-<argv0>.txt (collapsed
stacks: "thread;f1;f2 count") every 2 s. Wall-clock samples: a thread blocked in a read
shows up in that read.
"""

import os
import sys

_DIR = os.environ.get("DIM_BENCH_SAMPLE")

if _DIR:
    import collections
    import threading
    import time

    def _sampler() -> None:
        me = threading.get_ident()
        counts: collections.Counter = collections.Counter()
        name = os.path.basename(sys.argv[0] or "python") if sys.argv else "python"
        role = "connection" if "multiprocessing" in " ".join(sys.argv) else name
        path = os.path.join(_DIR, f"{os.getpid()}-{role}.txt")
        last_write = time.monotonic()
        written = False
        while True:
            time.sleep(0.002)
            names = {t.ident: t.name for t in threading.enumerate()}
            for tid, frame in sys._current_frames().items():
                if tid == me:
                    continue
                stack = []
                while frame is not None:
                    code = frame.f_code
                    stack.append(
                        f"{code.co_name} "
                        f"({os.path.basename(code.co_filename)}:{code.co_firstlineno})"
                    )
                    frame = frame.f_back
                stack.append(names.get(tid, str(tid)))
                counts[";".join(reversed(stack))] += 1
            if time.monotonic() - last_write > 2:
                last_write = time.monotonic()
                if written and not os.path.exists(path):
                    # the profiler deleted the file: start over from here
                    counts.clear()
                written = True
                with open(path + ".tmp", "w") as f:
                    for k, v in counts.items():
                        f.write(f"{k} {v}\n")
                os.replace(path + ".tmp", path)

    threading.Thread(target=_sampler, name="bench-sampler", daemon=True).start()
