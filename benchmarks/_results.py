"""Shared by the benchmark scripts: print a section and append it to benchmarks/RESULTS.md."""

from __future__ import annotations

import os
import platform
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "RESULTS.md"


def cpu_name() -> str:
    """The processor's model name (``/proc/cpuinfo``), or the platform's word for it."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown processor"


def memory_gib() -> str:
    """Total memory in GiB (``/proc/meminfo``), or ``"?"``."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return f"{int(line.split()[1]) / 2**20:.0f}"
    except (OSError, ValueError, IndexError):
        pass
    return "?"


def machine() -> str:
    """The machine a table was measured on, as read from it: cores, architecture, processor, memory."""
    return f"{os.cpu_count()}-core {platform.machine()} ({cpu_name()}), {memory_gib()} GiB, no GPU"


def publish(lines: list[str], write: bool = True) -> None:
    """Print ``lines``; unless ``write`` is false, append them to RESULTS.md."""
    print("\n".join(lines))
    if write:
        with open(RESULTS, "a", encoding="utf-8") as fh:
            fh.write("\n".join(lines) + "\n")
        print(f"appended to {RESULTS}")
