"""Facts about the machine a figure was measured on, for benchmark and checkpoint reports, and
the matmul peak that model FLOPs utilisation (MFU) is measured against."""

from __future__ import annotations

import datetime
import json
import os
import platform
import sys
import time
from pathlib import Path

import torch

PEAK_SIZE = 1024  # square matmuls this large run near the peak on a CPU and are quick to time
_peaks: dict[str, float] = {}


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def cpu_flags() -> set[str]:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def describe() -> dict[str, str]:
    """The one description of this machine that every report starts with (benchmarks, the
    checkpoint builders, the app's about line): what a figure was measured on."""
    flags = cpu_flags()
    try:
        memory = f"{os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') / 1024**3:.0f} GiB"
    except (ValueError, OSError, AttributeError):
        memory = "unknown"
    return {
        "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "cpu": cpu_model(),
        "logical cpus": str(os.cpu_count()),
        "torch threads": str(torch.get_num_threads()),
        "bf16 matmul instructions": bf16_instructions(flags) or "none (bf16 is emulated)",
        "memory": memory,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "GPU": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none",
        "load average": load_average(),
    }


def bf16_instructions(flags: set[str] | None = None) -> str | None:
    """The CPU's bf16 matmul instruction set (amx_bf16 or avx512_bf16), or None: without one,
    torch emulates bf16 and autocast is far slower than float32."""
    flags = cpu_flags() if flags is None else flags
    return next((f for f in ("amx_bf16", "avx512_bf16") if f in flags), None)


def bf16_trains_fast() -> bool:
    """Whether bf16 autocast can speed up training here: a CUDA GPU with bf16, or a CPU with bf16
    matmul instructions (the trainer picks CUDA when there is one)."""
    if torch.cuda.is_available():
        return torch.cuda.is_bf16_supported()
    return bf16_instructions() is not None


def markdown(facts: dict) -> str:
    """A machine description as the bullet list the reports print."""
    return "\n".join(f"- {key}: {value}" for key, value in facts.items())


def load_averages() -> list[float]:
    """The 1, 5 and 15-minute load averages: other work on a shared machine slows every setting."""
    try:
        return [float(x) for x in Path("/proc/loadavg").read_text().split()[:3]]
    except (OSError, ValueError):
        return []


def load_average() -> str:
    return " ".join(f"{x:.2f}" for x in load_averages()) or "unknown"


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


def cache_dir() -> Path:
    """Where measured machine facts are kept between runs (``BABYGPT_CACHE_DIR`` overrides)."""
    return Path(os.environ.get("BABYGPT_CACHE_DIR") or Path.home() / ".cache" / "babygpt")


def _peak_key(device: torch.device, dtype: torch.dtype) -> str:
    if device.type == "cuda":
        where = torch.cuda.get_device_name(device)
    else:
        where = f"{cpu_model()}, {torch.get_num_threads()} threads"
    return f"{where} | {device.type} | {dtype} | torch {torch.__version__}"


def measure_matmul_peak(device: torch.device, dtype: torch.dtype = torch.float32, repeats: int = 10,
                        max_seconds: float = 2.0) -> float:
    """FLOP/s of the best of ``repeats`` square ``PEAK_SIZE`` matmuls: what this machine's matmuls
    reach at best. Timing stops early after ``max_seconds`` (a CPU without bf16 instructions
    emulates bf16 a hundred times slower than fp32: one product then takes seconds)."""
    generator = torch.Generator(device).manual_seed(0)  # never the global RNG: a run's dropout must not shift
    a, b = (torch.randn(PEAK_SIZE, PEAK_SIZE, device=device, dtype=dtype, generator=generator) for _ in range(2))
    times = []
    for _ in range(repeats + 1):  # the first one warms up caches and kernels
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        start = time.perf_counter()
        a @ b
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        times.append(time.perf_counter() - start)
        if len(times) > 1 and sum(times) > max_seconds:
            break
    return 2 * PEAK_SIZE**3 / min(times[1:] or times)


def matmul_peak_flops(device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32) -> float:
    """This machine's matmul peak, measured once and kept in ``cache_dir()/matmul_peak.json`` by
    processor, threads, device, dtype and torch version (and in memory for this process)."""
    device = torch.device(device)
    key = _peak_key(device, dtype)
    if key in _peaks:
        return _peaks[key]
    path = cache_dir() / "matmul_peak.json"
    try:
        known = json.loads(path.read_text())
    except (OSError, ValueError):
        known = {}
    if not isinstance(known, dict) or not isinstance(known.get(key), (int, float)) or known[key] <= 0:
        known = known if isinstance(known, dict) else {}
        known[key] = measure_matmul_peak(device, dtype)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(known, indent=2) + "\n")
        except OSError:
            pass  # a read-only home: measure again next process, still correct
    _peaks[key] = float(known[key])
    return _peaks[key]
