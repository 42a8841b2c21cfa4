"""Stopwatch for work inside a communication hook, read later without stalling the backward pass."""

from __future__ import annotations

import time

import torch


class Stopwatch:
    """Times one region; on CUDA with events, so the hook never waits for the GPU.

    Call :meth:`start` and :meth:`stop` around the region and :meth:`ms` after the step (a callback), when
    synchronising the end event costs nothing.
    """

    def __init__(self, device: torch.device) -> None:
        self._cuda = device.type == "cuda"
        self._begin: torch.cuda.Event | float | None = None
        self._end: torch.cuda.Event | float | None = None

    def start(self) -> None:
        if self._cuda:
            self._begin = torch.cuda.Event(enable_timing=True)
            self._begin.record()
        else:
            self._begin = time.perf_counter()

    def stop(self) -> None:
        if self._cuda:
            self._end = torch.cuda.Event(enable_timing=True)
            self._end.record()
        else:
            self._end = time.perf_counter()

    def ms(self) -> float:
        if self._begin is None or self._end is None:
            return 0.0
        if self._cuda:
            self._end.synchronize()
            return float(self._begin.elapsed_time(self._end))
        return (self._end - self._begin) * 1000.0
