"""Shared by the benchmark scripts: print a section and append it to benchmarks/RESULTS.md."""

from __future__ import annotations

from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "RESULTS.md"


def publish(lines: list[str], write: bool = True) -> None:
    """Print ``lines``; unless ``write`` is false, append them to RESULTS.md."""
    print("\n".join(lines))
    if write:
        with open(RESULTS, "a", encoding="utf-8") as fh:
            fh.write("\n".join(lines) + "\n")
        print(f"appended to {RESULTS}")
