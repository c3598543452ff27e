"""torch's CPU threads (``--threads``): how many by default, and setting them when torch is first imported
rather than by importing it.

The default (:func:`default_threads`) is every core this process may run on: its CPU affinity (``taskset``,
a cpuset) and, in a container, its cgroup CPU quota, capped at :data:`MAX_DEFAULT_THREADS`. torch's threads
busy-wait, so where other processes already keep the machine's cores busy, more threads than idle cores make
every process slower: then the default backs off to the idle cores, and the command line says so once. The
choice is made when torch is first imported, so a command that never imports it pays nothing for it.
``--threads N`` or ``$GRAPHPROF_THREADS`` sets the count outright. A model's numbers are reproducible for a given
thread count; another count can move the last digits of a GNN's float sums, so ``train`` records the count it
used in each model's ``config.json``.

Importing torch and PyG is slow, and ``build-graph``, ``generate`` and ``predict`` with ``lr`` never need
them. So the command line does not import torch to set its thread count: where torch is already imported
it is set at once, otherwise an import hook sets it right after ``import torch`` finishes, wherever that is.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import math
import os
import sys
import time
from pathlib import Path
from typing import Any

#: the environment variable that sets the thread count when ``--threads`` is not given
ENV = "GRAPHPROF_THREADS"
#: the most threads the default takes on a large machine, which a job it was not asked to size should not fill
#: (``--threads`` goes beyond)
MAX_DEFAULT_THREADS = 16
_CGROUP = Path("/sys/fs/cgroup")


def usable_cores() -> int:
    """The cores this process may run on: its CPU affinity, lowered to a cgroup CPU quota where one is set."""
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # no affinity on this platform
        cores = os.cpu_count() or 1
    quota = _cgroup_quota()
    if quota is not None:
        cores = min(cores, max(1, math.floor(quota)))
    return max(1, cores)


def _cgroup_quota(root: Path = _CGROUP) -> float | None:
    """CPUs the cgroup may use (quota / period; cgroup v2 ``cpu.max``, else v1 ``cpu.cfs_quota_us``), or None
    where no quota is set or none can be read."""
    try:
        text = (root / "cpu.max").read_text().split()
        if len(text) == 2 and text[0] != "max":
            return int(text[0]) / int(text[1])
        if text:
            return None
    except (OSError, ValueError):
        pass
    try:
        quota = int((root / "cpu" / "cpu.cfs_quota_us").read_text())
        period = int((root / "cpu" / "cpu.cfs_period_us").read_text())
        return quota / period if quota > 0 and period > 0 else None
    except (OSError, ValueError):
        return None


def busy_cores(interval: float = 0.1) -> float | None:
    """How many of the machine's cores other processes keep busy now: the non-idle share of ``/proc/stat``'s CPU
    time over ``interval`` seconds (this process sleeps meanwhile), times the cores; None where it cannot be
    read. The load average would lag by a minute: a command that just ended would still count."""
    def sample() -> tuple[int, int]:
        fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
        idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
        return sum(fields[:8]), idle

    try:
        total0, idle0 = sample()
        time.sleep(interval)
        total1, idle1 = sample()
    except (OSError, ValueError, IndexError):
        return None
    if total1 <= total0:
        return None
    return (1.0 - (idle1 - idle0) / (total1 - total0)) * (os.cpu_count() or 1)


def default_threads(cores: int | None = None, busy: float | None = None,
                    machine: int | None = None) -> tuple[int, str | None]:
    """The thread count to use when none is given, and a sentence saying why it is lower than the usable cores
    (None where it is not).

    Args:
        cores: the cores this process may use (default :func:`usable_cores`). busy: the machine's cores other
            processes keep busy (default :func:`busy_cores`, or the 1-minute load average where that cannot be
            read). machine: the machine's cores (default ``os.cpu_count()``).
    """
    cores = min(usable_cores() if cores is None else cores, MAX_DEFAULT_THREADS)
    if busy is None:
        busy = busy_cores()
    if busy is None:
        try:
            busy = os.getloadavg()[0]
        except OSError:  # no load average on this platform
            busy = 0.0
    machine = (os.cpu_count() or cores) if machine is None else machine
    idle = machine - busy
    if idle >= cores - 0.5:  # half a core of other work is noise, not contention
        return cores, None
    threads = max(1, min(cores, math.floor(idle + 0.5)))
    if threads >= cores:
        return cores, None
    return threads, (f"other processes keep {busy:.1f} of this machine's {machine} cores busy: torch uses "
                     f"{threads} thread{'s' if threads > 1 else ''} of the {cores} cores this process may use; "
                     f"--threads N or {ENV}=N sets the count")


def threads_from_env() -> int | None:
    """``$GRAPHPROF_THREADS`` as an int, None where it is unset or empty.

    Raises:
        ValueError: it is set but is not an integer.
    """
    value = os.environ.get(ENV, "").strip()
    return int(value) if value else None


def set_torch_threads(n: int | None, note=None) -> None:
    """``torch.set_num_threads(n)`` now if torch is imported, else as soon as it is (no import here).

    ``n`` None: :func:`default_threads`, decided when torch is imported (a command that never imports it pays
    nothing); where it backs off, ``note(sentence)`` is called once with the reason.
    """
    def apply(torch) -> None:
        count, why = (n, None) if n is not None else default_threads()
        torch.set_num_threads(count)
        if why and note is not None:
            note(why)

    if "torch" in sys.modules:
        apply(sys.modules["torch"])
        return
    for finder in [f for f in sys.meta_path if isinstance(f, _AfterImport)]:
        sys.meta_path.remove(finder)  # the last call wins, as with set_num_threads itself
    sys.meta_path.insert(0, _AfterImport("torch", apply))


class _AfterImport(importlib.abc.MetaPathFinder):
    """Finds ``name`` with the other finders and wraps its loader to call ``callback(module)`` once loaded."""

    def __init__(self, name: str, callback) -> None:
        self.name, self.callback, self.done = name, callback, False

    def find_spec(self, fullname: str, path=None, target=None):
        if fullname != self.name or self.done:
            return None
        self.done = True  # once (not removed here: the import machinery is iterating sys.meta_path)
        spec = importlib.machinery.PathFinder.find_spec(fullname, path)
        if spec is not None and spec.loader is not None:
            spec.loader = _CallbackLoader(spec.loader, self.callback)
        return spec


class _CallbackLoader(importlib.abc.Loader):
    def __init__(self, loader, callback) -> None:
        self._loader, self._callback = loader, callback

    def create_module(self, spec):
        return self._loader.create_module(spec)

    def exec_module(self, module) -> None:
        self._loader.exec_module(module)
        self._callback(module)

    def __getattr__(self, name: str) -> Any:  # get_source, get_resource_reader, ...: the real loader's
        return getattr(self._loader, name)
