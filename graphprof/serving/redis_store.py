"""The online store: every user's current profile in Redis (``graphprof publish``), and ``serve --store`` answering
from it, so several API processes share one store.

Layout, under a prefix (default ``graphprof``):

* ``<prefix>:user:<user id>``: one hash per user; field ``<target>`` holds that target's JSON (class,
  probabilities, model version), field ``community`` the community JSON (where detected);
* ``<prefix>:version``: a hash with the work directory's ``graph_id``, the users published, and the time.

``publish`` writes every user's hash (in MULTI/EXEC chunks), then removes every other user hash under the prefix
(users the work directory does not hold, erased ones among them), then writes the version: a reader sees the previous
profile or the new one of a user, and erased users are gone once ``publish`` returns.
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path

from graphprof.errors import ConfigError

CHUNK = 10_000


def connect(url: str):
    """A Redis client for ``redis://HOST:PORT/DB`` (checked with a PING)."""
    import redis

    if not url.startswith(("redis://", "rediss://", "unix://")):
        raise ConfigError(f"--redis must be a redis://HOST:PORT/DB URL. Got {url!r} instead")
    try:
        client = redis.Redis.from_url(url, decode_responses=True, socket_connect_timeout=5)
        client.ping()
    except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError, ValueError) as exc:
        raise ConfigError(f"--redis must name a reachable Redis server. Got {url} ({exc})") from None
    return client


def publish(workdir: str | Path, url: str, prefix: str = "graphprof") -> dict:
    """Write every user's profile to Redis, drop stale and erased users' hashes; returns counts."""
    from graphprof.serving.store import WorkdirStore

    client = connect(url)
    store = WorkdirStore(workdir)
    import numpy as np

    ids = [str(i) for i in store.ids]
    written = 0
    for lo in range(0, len(ids), CHUNK):
        part = ids[lo:lo + CHUNK]
        pipe = client.pipeline(transaction=True)  # MULTI/EXEC: a reader sees a chunk's old or new hashes
        for uid, fields in zip(part, store.fields(np.arange(lo, lo + len(part)))):
            key = f"{prefix}:user:{uid}"
            pipe.delete(key)
            if fields:
                pipe.hset(key, mapping=fields)
            written += 1
        pipe.execute()
    current = set(ids)
    stale = []
    start = len(prefix) + len(":user:")
    for key in client.scan_iter(match=f"{_escape(prefix)}:user:*", count=CHUNK):
        if key[start:] not in current:
            stale.append(key)
    for lo in range(0, len(stale), CHUNK):
        client.delete(*stale[lo:lo + CHUNK])
    client.hset(f"{prefix}:version", mapping={"graph_id": store.version or "", "users": len(ids),
                                              "published": datetime.now(timezone.utc).isoformat(timespec="seconds")})
    return {"users": written, "removed": len(stale), "graph_id": store.version, "prefix": prefix}


def _escape(prefix: str) -> str:
    return "".join("\\" + c if c in "*?[]\\" else c for c in prefix)


class RedisStore:
    """What ``serve --store redis://...`` answers from: the published profiles (similar users and
    recommendations need the work directory's embeddings: a Redis-backed server answers 409 there)."""

    def __init__(self, url: str, prefix: str = "graphprof"):
        self.client, self.prefix = connect(url), prefix
        if not self.client.exists(f"{prefix}:version"):
            raise ConfigError(f"--store must hold published profiles. Got {url} without {prefix}:version; run "
                              "'graphprof publish --redis ...' first")
        self.reloads = 0

    def get(self) -> RedisStore:
        return self

    @property
    def version(self) -> str | None:
        return self.client.hget(f"{self.prefix}:version", "graph_id")

    @property
    def users(self) -> int:
        return int(self.client.hget(f"{self.prefix}:version", "users") or 0)

    def _hashes(self, user_ids: list[str]) -> list[dict]:
        pipe = self.client.pipeline(transaction=False)
        for uid in user_ids:
            pipe.hgetall(f"{self.prefix}:user:{uid}")
        return pipe.execute()

    def rows(self, user_ids: list[str]):
        import numpy as np

        pipe = self.client.pipeline(transaction=False)
        for uid in user_ids:
            pipe.exists(f"{self.prefix}:user:{uid}")
        return np.array([0 if e else -1 for e in pipe.execute()], dtype=np.int64)

    def profiles(self, user_ids: list[str]) -> list[dict | None]:
        out = []
        for uid, h in zip(user_ids, self._hashes(list(user_ids))):
            if not h:
                out.append(None)
                continue
            doc = {"user_id": str(uid), "targets": {k: json.loads(v) for k, v in sorted(h.items())
                                                    if k != "community"}}
            if "community" in h:
                doc["community"] = json.loads(h["community"])
            out.append(doc)
        return out

    def profiles_json(self, user_ids: list[str]) -> list[str | None]:
        return [None if d is None else json.dumps(d, separators=(",", ":")) for d in self.profiles(user_ids)]

    def similar(self, user_id: str, k: int):
        return None

    def recommendations(self, user_id: str, k: int):
        return None
