"""``graphprof serve`` under load: throughput and p50 / p99 latency per route, a real HTTP client against a real
server process on loopback.

The server (``cli.py serve``, its own process) serves a trained work directory (default: the 1M-user generated
shop that ``benchmarks/update.py`` trains, ``--workdir`` to choose another); the load generator is this process:
``--clients`` concurrent keep-alive HTTP/1.1 connections (asyncio streams; see :func:`load`), sharing the
machine's cores with the server.
Per route, ``--seconds`` of requests on random known users: ``GET /v1/users/{id}``, ``POST /v1/users:batch``
(``--batch`` ids a request), ``GET /healthz``. Also ``graphprof publish`` to a real redis-server on loopback
(wall time and peak RSS), and the same profiles read back through ``serve --store``.

Run: ``python benchmarks/serve.py [--workdir W] [--clients 32] [--seconds 20] [--batch 1000]``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _results import machine, publish  # noqa: E402
from build_graph import PY, ROOT  # noqa: E402

sys.path.insert(0, str(ROOT))
KEY = "benchmark-pseudonymisation-key-0123456789"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(work: Path, env: dict, extra: list[str] = ()) -> tuple[subprocess.Popen, int]:
    import httpx

    port = free_port()
    proc = subprocess.Popen([PY, "cli.py", "serve", "--workdir", str(work), "--port", str(port), "--no-events",
                             *extra], cwd=ROOT, env=env, stderr=subprocess.PIPE, text=True)
    for _ in range(1200):
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                return proc, port
        except httpx.HTTPError:
            time.sleep(0.1)
    proc.kill()
    raise SystemExit(f"the server did not start:\n{proc.stderr.read()[-3000:]}")


async def load(url: str, token: str, make, seconds: float, clients: int) -> tuple[list[float], int]:
    """``clients`` keep-alive HTTP/1.1 connections each sending ``make()``'s requests back to back for
    ``seconds``; the latencies and the count of answers other than 200.

    The client is asyncio's streams speaking HTTP/1.1 (request line, headers, Content-Length bodies): httpx's async
    client spends more CPU per request than the server here (it measured 180 requests/s where this client measures
    5,000 on the same server), and on a 2-core machine the load generator shares the server's cores."""
    host, port = url.split("//")[1].split(":")
    lat: list[float] = []
    errors = 0
    stop = time.perf_counter() + seconds

    async def worker():
        nonlocal errors
        reader, writer = await asyncio.open_connection(host, int(port))
        try:
            while time.perf_counter() < stop:
                method, path, body = make()
                data = json.dumps(body).encode() if body is not None else b""
                head = (f"{method} {path} HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {token}\r\n"
                        + (f"Content-Type: application/json\r\nContent-Length: {len(data)}\r\n" if body is not None
                           else "") + "\r\n").encode()
                t0 = time.perf_counter()
                writer.write(head + data)
                await writer.drain()
                answer = await reader.readuntil(b"\r\n\r\n")
                lines = answer.split(b"\r\n")
                length = next(int(x.split(b":")[1]) for x in lines if x.lower().startswith(b"content-length:"))
                await reader.readexactly(length)
                lat.append(time.perf_counter() - t0)
                if lines[0].split()[1] != b"200":
                    errors += 1
        finally:
            writer.close()

    await asyncio.gather(*(worker() for _ in range(clients)))
    return lat, errors


def row(route: str, lat: list[float], errors: int, seconds: float, per_request: int = 1) -> str:
    a = np.array(lat) * 1000
    rps = len(a) / seconds
    return (f"| {route} | {len(a):,} | {errors} | {rps:,.0f} | {rps * per_request:,.0f} | {np.percentile(a, 50):.1f} | "
            f"{np.percentile(a, 99):.1f} |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workdir", default="/tmp/graphprof-bench/u1000000_trained", help="a trained work directory")
    ap.add_argument("--clients", type=int, default=32, help="concurrent connections (default 32)")
    ap.add_argument("--seconds", type=float, default=20.0, help="seconds of load per route (default 20)")
    ap.add_argument("--batch", type=int, default=1000, help="ids per POST /v1/users:batch (default 1000)")
    ap.add_argument("--no-redis", action="store_true", help="skip publish and serve --store")
    ap.add_argument("--no-write", action="store_true", help="print only; do not append to RESULTS.md")
    args = ap.parse_args()

    from graphprof.serving import keys

    src = Path(args.workdir)
    tmp = Path(tempfile.mkdtemp(prefix="graphprof-serve-bench-"))
    work = tmp / "work"  # a copy: keys and the audit trail are written into it
    shutil.copytree(src, work, ignore=shutil.ignore_patterns("cache", "serving"))
    token = keys.create(work, "bench", ["admin"])
    env = {**os.environ, "GRAPHPROF_PSEUDONYM_KEY": KEY}
    import pandas as pd

    ids = pd.read_parquet(work / "features" / "users.parquet", columns=["user_id"])["user_id"].astype(str).to_numpy()
    rng = np.random.default_rng(0)
    lines = ["", f"### `serve` under load: {len(ids):,} users", "",
             f"Command: `python benchmarks/serve.py --workdir {args.workdir} --clients {args.clients} --seconds "
             f"{args.seconds:g} --batch {args.batch}`. Machine: {machine()}; the load generator (HTTP/1.1 over asyncio "
             f"streams, {args.clients} keep-alive connections) shares the cores with the server (`graphprof serve`, one "
             "uvicorn process). Random known users.", "",
             "| route | requests | errors | requests/s | profiles/s | p50 ms | p99 ms |", "|---|---:|---:|---:|---:|---:|---:|"]
    proc, port = start(work, env)
    url = f"http://127.0.0.1:{port}"
    try:
        plans = [("GET /v1/users/{id}", lambda: ("GET", f"/v1/users/{ids[rng.integers(len(ids))]}", None), 1),
                 ("POST /v1/users:batch", lambda: ("POST", "/v1/users:batch",
                                                   {"ids": list(ids[rng.integers(0, len(ids), args.batch)])}),
                  args.batch),
                 ("GET /healthz", lambda: ("GET", "/healthz", None), 0)]
        for route, make, per in plans:
            lat, errors = asyncio.run(load(url, token, make, args.seconds, args.clients))
            lines.append(row(route, lat, errors, args.seconds, per) if per else
                         row(route, lat, errors, args.seconds, 0).replace("| 0 |", "| - |", 1))
            print(lines[-1], flush=True)
    finally:
        proc.terminate()
        proc.wait(timeout=60)
    if not args.no_redis and shutil.which("redis-server"):
        import httpx

        rport = free_port()
        redis = subprocess.Popen(["redis-server", "--port", str(rport), "--bind", "127.0.0.1", "--save", "",
                                  "--appendonly", "no", "--dir", str(tmp)], stdout=subprocess.DEVNULL)
        time.sleep(0.5)
        rurl = f"redis://127.0.0.1:{rport}/0"
        try:
            t0 = time.perf_counter()
            pub = subprocess.Popen([PY, "cli.py", "publish", "--workdir", str(work), "--redis", rurl, "--json"],
                                   cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            _, status, usage = os.wait4(pub.pid, 0)
            secs = time.perf_counter() - t0
            doc = json.loads(pub.stdout.read())
            lines += ["", f"`graphprof publish --redis` of {doc['users']:,} profiles: {secs:.1f} s, peak RSS "
                          f"{usage.ru_maxrss / 2**20:.2f} GiB (exit {os.waitstatus_to_exitcode(status)})."]
            proc, port = start(work, env, ["--store", rurl])
            try:
                same = 0
                sample = ids[rng.integers(0, len(ids), 200)]
                p2, port2 = start(work, env)
                try:
                    for uid in sample:
                        a = httpx.get(f"http://127.0.0.1:{port}/v1/users/{uid}",
                                      headers={"Authorization": f"Bearer {token}"}).json()
                        b = httpx.get(f"http://127.0.0.1:{port2}/v1/users/{uid}",
                                      headers={"Authorization": f"Bearer {token}"}).json()
                        same += a == b
                finally:
                    p2.terminate()
                    p2.wait(timeout=60)
                lat, errors = asyncio.run(load(f"http://127.0.0.1:{port}", token, plans[0][1], args.seconds,
                                               args.clients))
            finally:
                proc.terminate()
                proc.wait(timeout=60)
            lines += [f"`serve --store {rurl.rsplit(':', 1)[0]}:PORT/0`: {same} of {len(sample)} random profiles "
                      "equal to the work directory's answer; under the same load:", "",
                      "| route | requests | errors | requests/s | profiles/s | p50 ms | p99 ms |",
                      "|---|---:|---:|---:|---:|---:|---:|", row("GET /v1/users/{id} (Redis)", lat, errors,
                                                                 args.seconds)]
        finally:
            redis.terminate()
            redis.wait(timeout=30)
    shutil.rmtree(tmp, ignore_errors=True)
    publish(lines, write=not args.no_write)


if __name__ == "__main__":
    main()
