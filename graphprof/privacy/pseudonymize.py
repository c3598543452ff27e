"""Pseudonymised user ids: HMAC-SHA256(key, id) as hex.

The key comes from the environment variable :data:`KEY_ENV` or a key file readable by its owner only, kept
outside the work directory; without a key, pseudonymisation is an error, never a silent plain hash.
Pseudonymised ids remain personal data.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import stat
from pathlib import Path

import numpy as np

from graphprof.errors import ConfigError

KEY_ENV = "GRAPHPROF_PSEUDONYM_KEY"
MIN_KEY_BYTES = 16


def load_key(key_file: str | Path | None = None, root: str | Path | None = None) -> bytes:
    """The pseudonymisation key: ``key_file`` if given, else the environment variable :data:`KEY_ENV`.

    Raises:
        ConfigError: no key, a key shorter than 16 bytes, a key file others can read, or one inside the
            work directory (a key stored beside the data it protects protects nothing).
    """
    if key_file is not None:
        path = Path(key_file)
        if not path.is_file():
            raise ConfigError(f"--key-file must be an existing file. Got {str(path)!r} instead")
        if root is not None and Path(root).resolve() in path.resolve().parents:
            raise ConfigError(f"--key-file must be kept outside the work directory. Got {path} inside {root}")
        mode = stat.S_IMODE(path.stat().st_mode)
        if mode & 0o077:
            raise ConfigError(f"{path}: a key file must be readable by its owner only (chmod 600). "
                              f"Got mode {oct(mode)} instead")
        key = path.read_bytes().strip()
    else:
        key = os.environ.get(KEY_ENV, "").encode()
        if not key:
            raise ConfigError(f"--pseudonymize needs a key: set {KEY_ENV} or pass --key-file FILE (chmod 600). "
                              "Got neither; ids are never replaced by a plain hash")
    if len(key) < MIN_KEY_BYTES:
        raise ConfigError(f"the pseudonymisation key must be at least {MIN_KEY_BYTES} bytes. Got {len(key)}")
    return key


def pseudonymize_ids(ids, key: bytes) -> np.ndarray:
    """HMAC-SHA256(key, id) as 64 hex characters, for each id."""
    return np.array([hmac.new(key, str(i).encode("utf-8"), hashlib.sha256).hexdigest() for i in ids],
                    dtype=object)
