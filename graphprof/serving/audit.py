"""The audit trail of ``graphprof serve``: one JSON line per request that reads or writes customer data.

``serving/audit.jsonl`` (owner-only, appended and flushed per request): ``time``, ``key`` (the API key's name, or
null when no valid key was given), ``route`` (the route's template, never a user id), ``method``, ``status``,
``users`` (how many users the request named) and ``user_ids``: those ids pseudonymised with the HMAC key
(:mod:`graphprof.privacy.pseudonymize`; never in clear). :func:`summarize` is ``graphprof audit``: per key, the
requests, the profiles read, the routes, and the first and last time.
"""

from __future__ import annotations

import json
import os
import threading
from datetime import datetime, timezone
from pathlib import Path

from graphprof.privacy.pseudonymize import pseudonymize_ids

AUDIT_FILE = "serving/audit.jsonl"


class AuditLog:
    def __init__(self, root: str | Path, key: bytes):
        self.path = Path(root) / AUDIT_FILE
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.key = key
        self._lock = threading.Lock()
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        self._fh = os.fdopen(fd, "a", encoding="utf-8")

    def record(self, key_name: str | None, method: str, route: str, status: int, user_ids: list[str]) -> None:
        line = {"time": datetime.now(timezone.utc).isoformat(timespec="milliseconds"), "key": key_name,
                "method": method, "route": route, "status": int(status), "users": len(user_ids),
                "user_ids": [str(x) for x in pseudonymize_ids([str(u) for u in user_ids], self.key)]
                if user_ids else []}
        text = json.dumps(line, separators=(",", ":")) + "\n"
        with self._lock:
            self._fh.write(text)
            self._fh.flush()

    def close(self) -> None:
        self._fh.close()


def summarize(root: str | Path) -> dict:
    """Per key name: requests, users named, requests refused (4xx), routes, first and last time."""
    from graphprof.errors import ArtifactError

    path = Path(root) / AUDIT_FILE
    if not path.exists():
        raise ArtifactError(f"{path}: not found; nothing was served from this work directory yet")
    per: dict[str, dict] = {}
    bad = 0
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            try:
                e = json.loads(line)
            except json.JSONDecodeError:
                bad += 1  # a line cut by a crash mid-write
                continue
            k = per.setdefault(e.get("key") or "(no valid key)", {"requests": 0, "users": 0, "refused": 0,
                                                                 "routes": {}, "first": e["time"],
                                                                 "last": e["time"]})
            k["requests"] += 1
            k["users"] += int(e.get("users", 0)) if int(e.get("status", 500)) < 400 else 0
            k["refused"] += int(400 <= int(e.get("status", 500)) < 500)
            k["routes"][e["route"]] = k["routes"].get(e["route"], 0) + 1
            k["first"], k["last"] = min(k["first"], e["time"]), max(k["last"], e["time"])
    return {"file": str(path), "keys": per, "unreadable_lines": bad}
