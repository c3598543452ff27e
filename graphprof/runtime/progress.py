"""Progress bars on stderr for long work (training, communities, building the graph), shown only to a person.

One switch decides for the whole process: :func:`enable`. The command line turns it on where stderr is a
terminal and neither ``-q/--quiet`` nor ``--json`` is given (:func:`wanted`), so piped output, ``--json`` and
log files stay exactly as they are. The library default is off: tests, notebooks and scripts that call the
Python API see no bar unless they call ``enable()`` themselves.

Bars are updated per stage, per fit or per epoch, never per row, and read no random generator, so they change
neither the speed nor any computed number. When off, :func:`bar` returns an object with the same methods that
does nothing, and tqdm is not even imported.
"""

from __future__ import annotations

import contextlib
import logging
import sys
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any, TextIO

_enabled = False
#: stages take very different times, so a rate or an estimate of the time left would mislead: the bar, the count,
#: the elapsed time and the stage running
STAGES_FORMAT = "{l_bar}{bar}| {n_fmt}/{total_fmt} stages [{elapsed}{postfix}]"


def wanted(quiet: bool = False, json: bool = False, stream: TextIO | None = None) -> bool:
    """Whether a command line run should show bars: ``stream`` (default: stderr) is a terminal, and neither
    quiet nor JSON output was asked for."""
    stream = sys.stderr if stream is None else stream
    try:
        tty = bool(stream.isatty())
    except (AttributeError, ValueError):  # no isatty, or a closed stream
        tty = False
    return tty and not quiet and not json


def enable(on: bool = True) -> None:
    """Turn progress bars on (or off) for this process."""
    global _enabled
    _enabled = bool(on)


def enabled() -> bool:
    """Whether :func:`bar` and :func:`track` show anything."""
    return _enabled


class _Silent:
    """What :func:`bar` returns when bars are off: the tqdm methods graphprof calls, doing nothing."""

    n = 0
    total = None

    def update(self, n: float = 1) -> None:
        pass

    def set_postfix(self, *args: Any, **kwargs: Any) -> None:
        pass

    def set_postfix_str(self, *args: Any, **kwargs: Any) -> None:
        pass

    def set_description(self, *args: Any, **kwargs: Any) -> None:
        pass

    def refresh(self) -> None:
        pass

    def close(self) -> None:
        pass

    def __enter__(self) -> _Silent:
        return self

    def __exit__(self, *exc: object) -> None:
        return None


def bar(total: int | None = None, desc: str | None = None, unit: str = "it", leave: bool = True,
        bar_format: str | None = None, disable: bool = False) -> Any:
    """A tqdm bar on stderr, or, when bars are off, a silent stand-in with the same ``update`` /
    ``set_postfix`` / ``set_postfix_str`` / ``set_description`` / ``refresh`` / ``close`` methods and
    context-manager use. Nested bars (an epoch bar inside a fit bar) take ``leave=False`` so they vanish once
    done. ``disable``: the silent stand-in for this bar (work too short to show)."""
    if not _enabled or disable:
        return _Silent()
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit=unit, leave=leave, file=sys.stderr, dynamic_ncols=True,
                bar_format=bar_format)


def track(iterable: Iterable, desc: str | None = None, total: int | None = None, unit: str = "it",
          leave: bool = True) -> Iterable:
    """``iterable`` itself when bars are off, else wrapped in a tqdm bar on stderr."""
    if not _enabled:
        return iterable
    from tqdm import tqdm

    return tqdm(iterable, desc=desc, total=total, unit=unit, leave=leave, file=sys.stderr, dynamic_ncols=True)


@contextlib.contextmanager
def stages(desc: str, names: Sequence[str]) -> Iterator[Callable[[str], None]]:
    """A bar over the named stages of one piece of work: call the yielded ``stage(name)`` as each stage starts
    (the one before is then counted done, and ``name`` is shown beside the bar); every stage is counted done
    when the block ends without an error."""
    if not _enabled:
        yield lambda name: None
        return
    with bar(total=len(names), desc=desc, unit="stage", bar_format=STAGES_FORMAT) as shown:
        started: list[str] = []

        def stage(name: str) -> None:
            shown.set_postfix_str(name, refresh=False)
            if started:
                shown.update()
            started.append(name)
            shown.refresh()

        yield stage
        shown.update(shown.total - shown.n)


@contextlib.contextmanager
def logging_to_bars(logger: logging.Logger) -> Iterator[None]:
    """While bars are on, route ``logger``'s console messages through tqdm, so a log line is printed above
    the bars rather than across them; when off, nothing changes."""
    if not _enabled:
        yield
        return
    from tqdm.contrib.logging import logging_redirect_tqdm

    with logging_redirect_tqdm(loggers=[logger]):
        yield
