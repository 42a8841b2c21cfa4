"""Density schedule of DGC: the paper's exponential warm-up, then the final density."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

# Lin et al. (ICLR 2018), section 3.3: sparsity 75%, 93.75%, 98.4375%, 99.6% in the first four epochs,
# then 99.9%. The authors' code defaults to a different (geometric) schedule; this is the paper's.
PAPER_WARMUP: tuple[float, ...] = (0.25, 0.0625, 0.015625, 0.004)


class DensitySchedule:
    """Fraction of each compressed tensor's entries that a rank sends, as a function of training progress.

    Args:
        density: final density (0.001 sends 0.1% of the entries: 99.9% sparsity).
        warmup: densities of the warm-up stages, in order; empty for none. A stage sparser than the final
            density is raised to it (the paper's stages end at 0.4%, below a final density of 1% say).
        interval: whether a warm-up stage lasts ``every`` epochs or ``every`` optimizer steps.
        every: length of each warm-up stage in epochs or steps.
    """

    def __init__(
        self,
        density: float = 0.001,
        warmup: Sequence[float] = PAPER_WARMUP,
        interval: Literal["epoch", "step"] = "epoch",
        every: int = 1,
    ) -> None:
        for value in (density, *warmup):
            if not 0.0 < value <= 1.0:
                raise ValueError(f"DGC densities must lie in (0, 1], got {value}")
        if interval not in ("epoch", "step"):
            raise ValueError(f"warm-up interval must be 'epoch' or 'step', got {interval!r}")
        if every < 1:
            raise ValueError(f"each warm-up stage must last at least 1 {interval}, got {every}")
        self.density = float(density)
        self.warmup = tuple(max(float(d), self.density) for d in warmup)
        self.interval = interval
        self.every = int(every)

    def at(self, epoch: int, step: int) -> float:
        """Density for the optimizer step ``step`` (0-based, global) taken in epoch ``epoch`` (0-based)."""
        stage = (epoch if self.interval == "epoch" else step) // self.every
        return self.warmup[stage] if stage < len(self.warmup) else self.density

    def __repr__(self) -> str:
        return f"DensitySchedule(density={self.density}, warmup={self.warmup}, interval={self.interval!r}, every={self.every})"
