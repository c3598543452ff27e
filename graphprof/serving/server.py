"""``graphprof serve``: the API (:mod:`graphprof.serving.app`) on uvicorn, bound before it starts (a port in use
is said plainly), with the event applier running beside it."""

from __future__ import annotations

import logging
import socket
from pathlib import Path

log = logging.getLogger("graphprof")


def bind(host: str, port: int) -> socket.socket:
    """A listening socket on ``host:port`` (raises the OSError of a port in use or a host not this machine's)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


def build(workdir: str | Path, key_file=None, events: bool = True, interval: float = 2.0, store: str | None = None):
    """The app and its event journal for ``workdir`` (``store``: ``redis://...`` to answer from Redis)."""
    from graphprof import workdir as wd
    from graphprof.privacy.pseudonymize import load_key
    from graphprof.serving.app import create_app
    from graphprof.serving.events import EventJournal

    root = Path(workdir)
    wd.require_built(root)
    audit_key = load_key(key_file, root)  # the audit trail pseudonymises user ids: no key, no server
    if store is not None:
        from graphprof.serving.redis_store import RedisStore

        live = RedisStore(store)
    else:
        from graphprof.serving.store import LiveStore

        live = LiveStore(root)
    journal = EventJournal(root, interval=interval, key_file=key_file, publish_to=store) if events else None
    return create_app(root, live, audit_key, journal), journal


def serve(workdir: str | Path, host: str = "127.0.0.1", port: int = 8000, key_file=None, events: bool = True,
          interval: float = 2.0, store: str | None = None) -> None:
    """Serve until interrupted (see :mod:`graphprof.serving.app`)."""
    import uvicorn

    sock = bind(host, port)
    app, journal = build(workdir, key_file, events, interval, store)
    if journal is not None:
        journal.start()  # events a crash left journaled are applied before the first request
    if host not in ("127.0.0.1", "::1", "localhost"):
        log.warning("serve: listening on %s, beyond this machine: keep the API keys secret and put TLS in front",
                    host)
    log.info("serve: http://%s:%d (OpenAPI at /docs); work directory %s", host, sock.getsockname()[1], workdir)
    config = uvicorn.Config(app, log_level="warning", access_log=False)
    try:
        uvicorn.Server(config).run(sockets=[sock])
    finally:
        if journal is not None:
            journal.stop()
        app.state.audit.close()
