"""The one exception tree of graphprof.

``GraphprofError`` means "the user can fix this": the command line turns it into exit code 2 with the
message and no traceback. Anything else is a bug (exit code 1, with traceback). Subclasses also subclass the
built-in exception they refine, so ``except ValueError`` keeps working for callers who do not know ours.
"""

from __future__ import annotations


class GraphprofError(Exception):
    """Root of every error a user can fix (bad input, bad arguments, missing or stale artifacts)."""


class InputError(GraphprofError, ValueError):
    """A bad input file: unreadable, empty, wrong format, or a required column missing.

    Attributes ``path``, ``row`` (1-based physical line, header = 1) and ``column`` say where, when known.
    """

    def __init__(self, message: str, *, path: str | None = None, row: int | None = None,
                 column: str | None = None):
        super().__init__(message)
        self.path = path
        self.row = row
        self.column = column


class ConfigError(GraphprofError, ValueError):
    """A bad argument: unknown model or target, impossible option value."""


class ArtifactError(GraphprofError, FileNotFoundError):
    """The work directory lacks an artifact a command needs, or holds one that is stale or unsafe."""


class LockError(GraphprofError, RuntimeError):
    """Another graphprof process holds the work directory."""
