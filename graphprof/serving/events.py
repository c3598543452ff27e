"""Events posted to ``graphprof serve``: appended durably to a journal, applied in micro-batches by ``update``.

``POST /v1/events`` appends the request's rows, one JSON line, to ``serving/events/pending.jsonl`` and fsyncs it
before the reply: an accepted event is on disk. The applier (one thread) seals the pending file every
``interval`` seconds (renamed ``batch-<seq>.jsonl``, a new pending file started), writes its rows as a batch
folder in the generic schema and runs :func:`graphprof.updating.update` on it; once applied (or found applied
before: a batch's files are a function of its sealed lines, so the update journal recognises them by their
sha256) the sealed file and folder are removed. A batch that ``update`` cannot read as a file is moved to
``serving/events/failed/`` with the reason beside it, so it never holds up the batches after it. On start, sealed files left by a crash are applied first, then
whatever is pending: nothing accepted is lost, nothing applied twice.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from pathlib import Path

import pandas as pd

from graphprof.errors import ConfigError, InputError

log = logging.getLogger("graphprof")
EVENTS_DIR = "serving/events"
PENDING = "pending.jsonl"
TABLE_COLUMNS = {"purchases": ["user_id", "item_id", "timestamp", "quantity", "price"],
                 "friendships": ["user_id", "friend_id"], "users": None}


class EventJournal:
    def __init__(self, root: str | Path, interval: float = 2.0, key_file=None, publish_to: str | None = None):
        self.root, self.interval, self.key_file = Path(root), interval, key_file
        self.publish_to = publish_to  # a Redis URL the server answers from: published again after each batch
        self.folder = self.root / EVENTS_DIR
        self.folder.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()  # appends and the seal
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.applied = self.failed = 0
        self.last_error: str | None = None
        self._pending = {p.name: _rows(p) for p in [*self._sealed(), self.folder / PENDING] if p.exists()}

    # ------------------------------------------------------------------------------------------------ append
    def append(self, doc: dict) -> int:
        """Append one request's rows durably; returns how many rows are pending."""
        line = (json.dumps(doc, separators=(",", ":"), allow_nan=False) + "\n").encode()
        with self._lock:
            fd = os.open(self.folder / PENDING, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            try:
                os.write(fd, line)
                os.fsync(fd)
            finally:
                os.close(fd)
            self._pending[PENDING] = self._pending.get(PENDING, 0) + _count(doc)
        return self.pending()

    def pending(self) -> int:
        """Rows accepted and not applied yet (pending and sealed files), counted as they come and go."""
        with self._lock:  # the applier thread changes the counts
            return sum(self._pending.values())

    # ------------------------------------------------------------------------------------------------- apply
    def _sealed(self) -> list[Path]:
        return sorted(self.folder.glob("batch-*.jsonl"), key=lambda p: int(p.stem.split("-")[1]))

    def seal(self) -> Path | None:
        """Move the pending lines into a new sealed file (None where nothing is pending)."""
        with self._lock:
            pending = self.folder / PENDING
            if not pending.exists() or pending.stat().st_size == 0:
                return None
            seq = max([int(p.stem.split("-")[1]) for p in self._sealed()] + [0]) + 1
            target = self.folder / f"batch-{seq}.jsonl"
            os.replace(pending, target)
            _fsync_dir(self.folder)
            self._pending[target.name] = self._pending.pop(PENDING, 0)
            return target

    def apply_sealed(self) -> int:
        """Apply every sealed file in order; returns how many were applied."""
        from graphprof.updating import update

        done = 0
        for path in self._sealed():
            data = path.with_suffix("")
            try:
                _write_batch(path, data)
                update(self.root, data=data, key_file=self.key_file)
            except ConfigError as exc:
                if "not applied before" not in str(exc):  # a batch applied before a crash: done already
                    raise
            except InputError as exc:  # a batch no update can read: set aside with why, the others go on
                failed = self.folder / "failed"
                failed.mkdir(exist_ok=True)
                os.replace(path, failed / path.name)
                (failed / f"{path.stem}.error.txt").write_text(f"{exc}\n", encoding="utf-8")
                with self._lock:
                    self._pending.pop(path.name, None)
                _rmtree(data)
                self.failed += 1
                log.warning("serve: events %s set aside in %s: %s", path.name, failed, exc)
                continue
            path.unlink()
            with self._lock:
                self._pending.pop(path.name, None)
            _rmtree(data)
            done += 1
            self.applied += 1
        if done and self.publish_to:
            from graphprof.serving.redis_store import publish

            publish(self.root, self.publish_to)
        return done

    def apply_now(self) -> int:
        self.seal()
        return self.apply_sealed()

    def start(self) -> None:
        self.apply_sealed()  # what a crash left sealed comes first
        self._thread = threading.Thread(target=self._run, name="graphprof-events", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=60)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.apply_now()
                self.last_error = None
            except Exception as exc:  # noqa: BLE001 - kept sealed, retried on the next tick and on restart
                self.last_error = str(exc)
                log.warning("serve: applying events failed (%s); they stay journaled and are retried", exc)
                time.sleep(self.interval)


def _count(doc: dict) -> int:
    return sum(len(doc.get(t) or []) for t in TABLE_COLUMNS)


def _rows(path: Path) -> int:
    return sum(_count(doc) for doc in _lines(path))


def _lines(path: Path):
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            if line.strip():
                try:
                    yield json.loads(line)
                except json.JSONDecodeError:  # a line cut by a crash before its fsync returned: never accepted
                    continue


def _write_batch(sealed: Path, out: Path) -> None:
    """The sealed lines as a batch folder in the generic schema (CSV; the same lines, the same bytes)."""
    tables: dict[str, list] = {t: [] for t in TABLE_COLUMNS}
    for doc in _lines(sealed):
        for t in TABLE_COLUMNS:
            tables[t].extend(doc.get(t) or [])
    _rmtree(out)
    out.mkdir(parents=True)
    columns = TABLE_COLUMNS["purchases"]
    pd.DataFrame(tables["purchases"], columns=columns).to_csv(out / "purchases.csv", index=False)
    if tables["friendships"]:
        pd.DataFrame(tables["friendships"], columns=TABLE_COLUMNS["friendships"]).to_csv(
            out / "friendships.csv", index=False)
    if tables["users"]:
        users = pd.DataFrame(tables["users"])
        users = users.reindex(columns=["user_id", *sorted(c for c in users.columns if c != "user_id")])
        users.to_csv(out / "users.csv", index=False)


def _rmtree(path: Path) -> None:
    import shutil

    shutil.rmtree(path, ignore_errors=True)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
