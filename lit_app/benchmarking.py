"""What every script in ``benchmarks/`` shares: timing a step on CPU or GPU, and naming the machine it ran on."""

from __future__ import annotations

import platform
import statistics
import time
from collections.abc import Callable

import torch


def synchronize(device: str | torch.device) -> None:
    """Wait for queued GPU work, so that a clock read after it measures it (no-op on the CPU)."""
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)


def seconds_per_call(step: Callable[[], object], device: str | torch.device, calls: int, warmup: int = 1,
                     blocks: int = 1) -> float:
    """Seconds per call of ``step``: ``warmup`` untimed calls, then the fastest of ``blocks`` timed blocks of ``calls``.

    The fastest block is the one least disturbed by other processes on a shared machine.
    """
    for _ in range(warmup):
        step()
    best = float("inf")
    for _ in range(blocks):
        synchronize(device)
        start = time.perf_counter()
        for _ in range(calls):
            step()
        synchronize(device)
        best = min(best, (time.perf_counter() - start) / calls)
    return best


def median_seconds(step: Callable[[], object], device: str | torch.device, repeats: int, warmup: int = 1) -> float:
    """The median of ``repeats`` timed single calls of ``step`` after ``warmup`` untimed ones."""
    for _ in range(warmup):
        step()
    return statistics.median(seconds_per_call(step, device, 1, warmup=0) for _ in range(repeats))


def cpu_name() -> str:
    """The processor's model name (``/proc/cpuinfo``), or what the platform module knows."""
    try:
        with open("/proc/cpuinfo") as handle:
            return next(line.split(":", 1)[1].strip() for line in handle if line.startswith("model name"))
    except (OSError, StopIteration):
        return platform.processor() or platform.machine()


def machine(device: str | torch.device) -> str:
    """The GPU's name, or the CPU's with the threads torch uses: the line a result is recorded with."""
    if torch.device(device).type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"{cpu_name()}, {torch.get_num_threads()} threads"
