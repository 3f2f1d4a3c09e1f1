"""Facts about the machine a figure was measured on, for benchmark and checkpoint reports."""

from __future__ import annotations

import platform
import sys
from pathlib import Path


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def load_average() -> str:
    """The 1/5/15-minute load average: other work on a shared machine slows every setting."""
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "unknown"


def chosen_shapes(parser, shapes_arg: str | None, quick: bool, shapes: dict) -> list[str]:
    """A benchmark's ``--shapes a,b`` (all by default, ``small`` with ``--quick``), checked against ``shapes``."""
    names = shapes_arg.split(",") if shapes_arg else (["small"] if quick else list(shapes))
    for name in names:
        if name not in shapes:
            parser.error(f"unknown shape {name!r}; choose from {', '.join(shapes)}")
    return names


def log(message: str) -> None:
    """Progress for a person watching; stdout carries the report."""
    print(message, file=sys.stderr, flush=True)
