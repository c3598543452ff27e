"""torch's CPU threads (``--threads``), set when torch is first imported rather than by importing it.

Importing torch and PyG is slow, and ``build-graph``, ``generate`` and ``predict`` with ``lr`` never need
them. So the command line does not import torch to set its thread count: where torch is already imported
it is set at once, otherwise an import hook sets it right after ``import torch`` finishes, wherever that is.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import sys
from typing import Any


def set_torch_threads(n: int) -> None:
    """``torch.set_num_threads(n)`` now if torch is imported, else as soon as it is (no import here)."""
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(n)
        return
    for finder in [f for f in sys.meta_path if isinstance(f, _AfterImport)]:
        sys.meta_path.remove(finder)  # the last call wins, as with set_num_threads itself
    sys.meta_path.insert(0, _AfterImport("torch", lambda torch: torch.set_num_threads(n)))


class _AfterImport(importlib.abc.MetaPathFinder):
    """Finds ``name`` with the other finders and wraps its loader to call ``callback(module)`` once loaded."""

    def __init__(self, name: str, callback) -> None:
        self.name, self.callback, self.done = name, callback, False

    def find_spec(self, fullname: str, path=None, target=None):
        if fullname != self.name or self.done:
            return None
        self.done = True  # once (not removed here: the import machinery is iterating sys.meta_path)
        spec = importlib.machinery.PathFinder.find_spec(fullname, path)
        if spec is not None and spec.loader is not None:
            spec.loader = _CallbackLoader(spec.loader, self.callback)
        return spec


class _CallbackLoader(importlib.abc.Loader):
    def __init__(self, loader, callback) -> None:
        self._loader, self._callback = loader, callback

    def create_module(self, spec):
        return self._loader.create_module(spec)

    def exec_module(self, module) -> None:
        self._loader.exec_module(module)
        self._callback(module)

    def __getattr__(self, name: str) -> Any:  # get_source, get_resource_reader, ...: the real loader's
        return getattr(self._loader, name)
