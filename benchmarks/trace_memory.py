"""Where a command's memory goes: run a ``cli.py`` command in this process and print, at each new high of the
resident size (steps of 0.5 GiB), the graphprof frames the main thread is in.

Run: ``/usr/bin/time -v python benchmarks/trace_memory.py train --workdir W --target gender --models sign``; the
trace goes to stderr, the command's own output where it always goes. A sampling thread reads ``/proc/self/statm``
every 50 ms (Linux only), which costs the command a little time: use it to find a peak, not to time a stage.
"""

from __future__ import annotations

import sys
import threading
import time
import traceback
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
STEP = 2 ** 29


def _rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096


def _sample(main_id: int, best: list) -> None:
    while True:
        r = _rss()
        if r > best[0] + STEP:
            best[0] = r
            frame = sys._current_frames().get(main_id)
            stack = [f"{f.filename.split('graphprof/')[-1]}:{f.lineno} {f.name}"
                     for f in traceback.extract_stack(frame) if "graphprof" in f.filename][-4:]
            print(f"RSS {r / 2**30:.2f} GiB  " + " <- ".join(reversed(stack)), file=sys.stderr, flush=True)
        time.sleep(0.05)


def main() -> int:
    best = [0]
    threading.Thread(target=_sample, args=(threading.get_ident(), best), daemon=True).start()
    from graphprof import cli

    code = cli.main()  # argv from sys.argv, as the command line runs it (the same allocator settings)
    print(f"peak {best[0] / 2**30:.2f} GiB", file=sys.stderr)
    return code


if __name__ == "__main__":
    sys.exit(main())
