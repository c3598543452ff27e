"""API keys for ``graphprof serve``: named, scoped, shown once, stored only as a salted hash.

A key reads ``gpk_<id>_<secret>`` (``id`` 8 hex characters, ``secret`` 256 random bits, URL-safe base64). The
work directory keeps, per key, its name, scopes, creation time, a random salt and ``HMAC-SHA256(salt, secret)``
(``serving/keys.json``, owner-only): the secret itself is never written. A request's key is found by its id and
compared in constant time. The secret has 256 bits of entropy, so one salted hash (not a slow password hash) is
what verifies it, once per request.
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from graphprof import workdir
from graphprof.errors import ConfigError

KEYS_FILE = "serving/keys.json"
SCOPES = ("profiles:read", "embeddings:read", "events:write", "admin")
_KEY = re.compile(r"gpk_([0-9a-f]{8})_([A-Za-z0-9_-]{43})")
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")


@dataclass(frozen=True)
class Key:
    name: str
    scopes: tuple[str, ...]

    def allows(self, scope: str) -> bool:
        return scope in self.scopes or "admin" in self.scopes


def _path(root: Path) -> Path:
    return Path(root) / KEYS_FILE


def _load(root: Path) -> dict:
    return workdir.load_json_if_any(_path(root)) or {"keys": {}}


def _digest(salt: str, secret: str) -> str:
    return hmac.new(bytes.fromhex(salt), secret.encode(), hashlib.sha256).hexdigest()


def create(root: str | Path, name: str, scopes: list[str]) -> str:
    """A new key with ``scopes``; returns it (the only time it is shown).

    Raises:
        ConfigError: a bad name or scope, or a name in use by a key that is not revoked.
    """
    if not _NAME.fullmatch(name or ""):
        raise ConfigError(f"key name must be 1-64 letters, digits, '_', '.' or '-'. Got {name!r} instead")
    bad = [s for s in scopes if s not in SCOPES]
    if bad or not scopes:
        raise ConfigError(f"--scopes must be some of {', '.join(SCOPES)}. Got {', '.join(bad) or 'none'} instead")
    root = Path(root)
    workdir.require_built(root)
    with _keys_locked(root):
        doc = _load(root)
        if any(k["name"] == name and not k.get("revoked") for k in doc["keys"].values()):
            raise ConfigError(f"key name must be new. Got {name!r}, a key that exists; revoke it first")
        key_id = secrets.token_hex(4)
        while key_id in doc["keys"]:
            key_id = secrets.token_hex(4)
        secret = base64.urlsafe_b64encode(secrets.token_bytes(32)).decode().rstrip("=")
        salt = secrets.token_hex(16)
        doc["keys"][key_id] = {"name": name, "scopes": sorted(set(scopes)), "salt": salt,
                               "hash": _digest(salt, secret), "created": _now(), "revoked": None}
        workdir.write_json(_path(root), doc)
    return f"gpk_{key_id}_{secret}"


def revoke(root: str | Path, name: str) -> int:
    """Revoke every live key named ``name``; returns how many.

    Raises:
        ConfigError: no live key of that name.
    """
    root = Path(root)
    with _keys_locked(root):
        doc = _load(root)
        hits = [k for k in doc["keys"].values() if k["name"] == name and not k.get("revoked")]
        if not hits:
            raise ConfigError(f"key name must be a live key. Got {name!r}; 'graphprof keys list' shows them")
        for k in hits:
            k["revoked"] = _now()
        workdir.write_json(_path(root), doc)
    return len(hits)


def listing(root: str | Path) -> list[dict]:
    """Every key's name, scopes, creation and revocation time (never the hash)."""
    return [{"name": k["name"], "scopes": k["scopes"], "created": k["created"], "revoked": k.get("revoked")}
            for k in _load(Path(root))["keys"].values()]


class KeyRing:
    """The keys of a work directory, read again when ``serving/keys.json`` changes (a revocation takes effect
    on the next request)."""

    def __init__(self, root: str | Path):
        self.path, self._stamp, self._doc = _path(Path(root)), None, {"keys": {}}

    def _fresh(self) -> dict:
        try:
            st = self.path.stat()
            stamp = (st.st_mtime_ns, st.st_size, st.st_ino)
        except FileNotFoundError:
            return {"keys": {}}
        if stamp != self._stamp:
            self._doc, self._stamp = workdir.load_json_if_any(self.path) or {"keys": {}}, stamp
        return self._doc

    def check(self, token: str | None) -> Key | None:
        """The live key ``token`` is, or None."""
        found = _KEY.fullmatch(token or "")
        if not found:
            return None
        entry = self._fresh()["keys"].get(found.group(1))
        if entry is None or entry.get("revoked"):
            return None
        if not hmac.compare_digest(entry["hash"], _digest(entry["salt"], found.group(2))):
            return None
        return Key(name=entry["name"], scopes=tuple(entry["scopes"]))


@contextlib.contextmanager
def _keys_locked(root: Path):
    """An exclusive lock on the key file alone (``serving/.keys.lock``), waited for: keys are managed while the
    server runs, and the server's updates hold the work directory's own lock."""
    path = Path(root) / KEYS_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.parent / ".keys.lock", "a+", encoding="utf-8") as fh:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
        yield


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")
