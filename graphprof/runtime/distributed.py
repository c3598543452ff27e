"""Data-parallel training across processes and machines (``torch.distributed``, gloo backend on CPU).

A *worker* is a process started by ``torchrun`` (it sets ``RANK``, ``WORLD_SIZE``, ``MASTER_ADDR``...). Every
worker reads the same work-directory files and computes the same inputs; rank 0 alone takes the work-directory
lock and writes. ``graphprof train --nproc N`` re-runs itself under ``torchrun --standalone`` (:func:`launch`);
on several machines the user runs ``torchrun`` on each and the workers find one another the same way.

Values are exchanged as JSON (never pickle): :func:`on_main` runs a step on rank 0 and hands its value, or
its user error, to every rank; :func:`everywhere` runs a step on every rank and fails on all if it fails on one,
so no rank is left waiting in a collective for a rank that stopped.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np

from graphprof import errors
from graphprof.errors import GraphprofError

STATUS_ENV = "GRAPHPROF_DIST_STATUS"  # folder where launched workers leave their exit codes
TIMEOUT_ENV = "GRAPHPROF_DIST_TIMEOUT"  # seconds a rank waits for the others (default 24 h: rank 0 alone fits lr)
# torchrun's own log line when a worker failed or a signal came: its failure report (a traceback) follows
_TORCHRUN_END = re.compile(r"^[EW]\d{4} \d\d:\d\d:\d\d.*(failed|signal)")


def is_worker() -> bool:
    """Started by ``torchrun`` with more than one process in all."""
    return "RANK" in os.environ and int(os.environ.get("WORLD_SIZE", "1")) > 1


def _group():
    """``torch.distributed`` where a process group is initialised, else None. Not an import: a process that has
    not imported torch has no process group (build-graph and lr's predict never import torch)."""
    dist = sys.modules.get("torch.distributed")
    return dist if dist is not None and dist.is_available() and dist.is_initialized() else None


def active() -> bool:
    """A process group of more than one process is initialised: collectives are live."""
    dist = _group()
    return dist is not None and dist.get_world_size() > 1


def rank() -> int:
    dist = _group()
    if dist is not None:
        return dist.get_rank()
    return int(os.environ["RANK"]) if is_worker() else 0


def world_size() -> int:
    dist = _group()
    if dist is not None:
        return dist.get_world_size()
    return int(os.environ["WORLD_SIZE"]) if is_worker() else 1


def is_main() -> bool:
    return rank() == 0


@contextlib.contextmanager
def init() -> Iterator[None]:
    """Join the process group (gloo) inside a worker, leave it on exit; a no-op in a single process or where
    the caller already initialised one (which then stays theirs to destroy)."""
    if not is_worker() or _group() is not None:
        yield
        return
    import torch.distributed as dist

    dist.init_process_group("gloo", timeout=timedelta(seconds=float(os.environ.get(TIMEOUT_ENV, 86400))))
    try:
        yield
        dist.barrier()  # nobody leaves while another rank still needs it
    finally:
        dist.destroy_process_group()


def barrier() -> None:
    if active():
        _group().barrier()


def shard(indices: np.ndarray, epoch: int = 0, seed: int | None = None, *, part: int | None = None,
          parts: int | None = None) -> np.ndarray:
    """This rank's share of ``indices`` (``part`` of ``parts``; default: this rank of the world): contiguous,
    disjoint across ranks, together all of them, sizes within one. With ``seed``, ``indices`` are first shuffled
    by a permutation fixed by ``(seed, epoch)``, the same on every rank (as ``DistributedSampler`` with
    ``set_epoch``); without, they are split in the given order."""
    indices = np.asarray(indices)
    if seed is not None:
        indices = indices[np.random.default_rng([seed, epoch]).permutation(len(indices))]
    return np.array_split(indices, world_size() if parts is None else parts)[rank() if part is None else part]


def _scalar(x: float, op: Callable) -> float:
    import torch

    t = torch.tensor([x], dtype=torch.float64)
    op(t)
    return float(t.item())


def all_reduce_sum(x: float) -> float:
    """The sum of ``x`` over the ranks (``x`` itself in one process)."""
    return _scalar(x, _group().all_reduce) if active() else x


def broadcast_float(x: float) -> float:
    """Rank 0's ``x`` on every rank: decisions taken on it (early stopping) are then the same everywhere."""
    return _scalar(x, lambda t: _group().broadcast(t, 0)) if active() else x


def broadcast_json(obj: Any, src: int = 0) -> Any:
    """Rank ``src``'s ``obj`` (JSON-serialisable: numpy scalars and arrays become numbers and lists, other
    objects their ``str``) on every rank."""
    if not active():
        return obj
    import torch

    dist = _group()
    data = b""
    if rank() == src:
        data = json.dumps(obj, default=lambda o: o.tolist() if isinstance(o, np.generic | np.ndarray) else str(o))
        data = data.encode("utf-8")
    size = torch.tensor([len(data)], dtype=torch.int64)
    dist.broadcast(size, src)
    buf = torch.frombuffer(bytearray(data), dtype=torch.uint8) if data else torch.zeros(int(size), dtype=torch.uint8)
    dist.broadcast(buf, src)
    return json.loads(buf.numpy().tobytes().decode("utf-8"))


def _outcome(fn: Callable[[], Any]) -> tuple[Any, GraphprofError | None, dict | None]:
    try:
        return fn(), None, None
    except GraphprofError as exc:
        exc.shown_by_main = True  # rank 0 prints it (cli.main); the other ranks stay quiet
        return None, exc, {"error": type(exc).__name__, "message": str(exc), "rank": rank()}


def _relayed(doc: dict) -> GraphprofError:
    cls = getattr(errors, doc["error"], None)
    cls = cls if isinstance(cls, type) and issubclass(cls, GraphprofError) else GraphprofError
    exc = cls(doc["message"] + (f" (on rank {doc['rank']})" if doc["rank"] else ""))
    exc.shown_by_main = True
    return exc


def on_main(fn: Callable[[], Any]) -> Any:
    """``fn()`` run on rank 0 only, its (JSON) value returned on every rank; a user error it raises is raised
    on every rank. In one process: just ``fn()``."""
    if not active():
        return fn()
    value, exc, doc = _outcome(fn) if is_main() else (None, None, None)
    got = broadcast_json({"value": value, "error": doc} if is_main() else None)
    if exc is not None:
        raise exc
    if got["error"] is not None:
        raise _relayed(got["error"])
    return value if is_main() else got["value"]


def everywhere(fn: Callable[[], Any]) -> Any:
    """``fn()`` on every rank; a user error on any rank is raised on every rank (the lowest failed rank's)."""
    if not active():
        return fn()
    value, exc, doc = _outcome(fn)
    dist = _group()
    first = int(_scalar(rank() if doc else world_size(), lambda t: dist.all_reduce(t, op=dist.ReduceOp.MIN)))
    if first == world_size():
        return value
    doc = broadcast_json(doc, src=first)
    raise exc if exc is not None else _relayed(doc)


_LOST = re.compile(r"connection (reset|closed) by peer|broken pipe|timed? ?out", re.IGNORECASE)


def lost_peer(exc: BaseException) -> bool:
    """A collective failed because another worker stopped (or hung): that one says why."""
    return is_worker() and isinstance(exc, RuntimeError) and bool(_LOST.search(str(exc)))


def exit_worker(code: int, note: bool = True) -> None:
    """In a worker: leave ``code`` where :func:`launch` reads it, and on failure exit at once: tearing down a
    process group while a peer waits in a collective can block until torchrun kills the process."""
    if not is_worker():
        return
    folder = os.environ.get(STATUS_ENV)
    if folder and code and note:
        with contextlib.suppress(OSError):
            (Path(folder) / f"rank{os.environ['RANK']}").write_text(str(code))
    if code:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


def strip_nproc(argv: list[str]) -> list[str]:
    """``argv`` without ``--nproc N`` / ``--nproc=N``."""
    out, skip = [], False
    for a in argv:
        if skip:
            skip = False
        elif a == "--nproc":
            skip = True
        elif not a.startswith("--nproc="):
            out.append(a)
    return out


def launch(argv: list[str], nproc: int) -> int:
    """Re-run ``graphprof <argv>`` (``--nproc`` removed) as ``nproc`` workers under ``torchrun --standalone``
    on this machine; return their exit code (2 for a user error, 1 for a bug, 130 when interrupted).

    The workers' stdout and stderr pass through; torchrun's own failure report (a traceback of the launcher)
    is shown only where no worker explained its exit."""
    package_root = str(Path(__file__).resolve().parents[2])
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (package_root, env.get("PYTHONPATH")) if p)
    env.setdefault("OMP_NUM_THREADS", "1")  # else torchrun warns that it sets it
    from graphprof.runtime.threads import ENV, usable_cores

    env.setdefault(ENV, str(max(1, usable_cores() // nproc)))  # the cores shared out, unless --threads says
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(nproc),
           "-m", "graphprof.cli", *strip_nproc(argv)]
    with tempfile.TemporaryDirectory(prefix="graphprof-dist-") as status:
        env[STATUS_ENV] = status
        proc = subprocess.Popen(cmd, env=env, stderr=subprocess.PIPE, text=True, errors="replace")
        report: list[str] = []

        # Ctrl-C reaches torchrun too, which stops the workers: wait for it, then say it once (cli.main)
        interrupted: list[int] = []
        previous = signal.signal(signal.SIGINT, lambda *_: interrupted.append(1))
        try:
            for line in proc.stderr:
                if report or interrupted or _TORCHRUN_END.match(line):
                    report.append(line)
                else:
                    sys.stderr.write(line)
        finally:
            signal.signal(signal.SIGINT, previous)
        rc = proc.wait()
        codes = [int(p.read_text()) for p in Path(status).glob("rank*")]
    if interrupted and rc != 0:
        raise KeyboardInterrupt
    if rc == 0:
        sys.stderr.writelines(report)
        return 0
    if codes:
        return 1 if 1 in codes else 130 if 130 in codes else 2
    sys.stderr.writelines(report)
    print(f"error: the {nproc} training processes failed (torchrun exit code {rc}); see the report above",
          file=sys.stderr)
    return rc or 1
