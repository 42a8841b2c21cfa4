"""The noise control: random noise at a given signal-to-noise ratio, not optimised against anything.

Adding noise at the same SNR as the adversarial examples of a dataset gives clips that differ from the clean
ones by as much, but without adversarial structure. A detector that flags these as readily as adversarial
examples detects noise, not attacks. The victim is still asked about every noisy clip, so the dataset also
shows whether the noise alone changes its output.
"""

from __future__ import annotations

from typing import Any, Literal

import torch

from lit_app.attacks.base import Attack, AttackBatch
from lit_app.attacks.metrics import valid_mask
from lit_app.attacks.victims import Victim
from lit_app.audio.noise import snr_gain
from lit_app.audio.pcm import quantize


class NoiseControl(Attack):
    """White or uniform noise scaled to an SNR per clip.

    Args:
        snr_db: signal-to-noise ratio of the added noise, dB, used when a call gives no per-clip ``snr_db``.
        distribution: ``gaussian`` or ``uniform`` white noise.
    """

    name = "noise"

    def __init__(self, snr_db: float = 30.0, distribution: Literal["gaussian", "uniform"] = "gaussian") -> None:
        if distribution not in ("gaussian", "uniform"):
            raise ValueError(f"distribution must be 'gaussian' or 'uniform', got {distribution!r}")
        self.snr_db = snr_db
        self.distribution = distribution

    def prepare(
        self, victim: Victim, clean: torch.Tensor, lengths: torch.Tensor, targets: list[str], generator: torch.Generator
    ) -> AttackBatch:
        """The noise aims at no target: nothing to encode, and every clip can be made."""
        feasible = torch.ones(clean.shape[0], dtype=torch.bool, device=clean.device)
        return AttackBatch(clean, lengths, targets, (), feasible, generator)

    def run(
        self, victim: Victim, batch: AttackBatch, snr_db: torch.Tensor | list[float] | None = None, **conditions: Any
    ) -> torch.Tensor:
        """``snr_db`` gives each clip its own SNR (e.g. that of the adversarial example it controls for)."""
        return self.add_noise(batch.clean, batch.lengths, batch.generator, snr_db)

    def add_noise(
        self,
        clean: torch.Tensor,
        lengths: torch.Tensor,
        generator: torch.Generator,
        snr_db: torch.Tensor | list[float] | None = None,
    ) -> torch.Tensor:
        """``[batch, samples]`` clips plus noise at ``snr_db`` per clip (``self.snr_db`` when omitted), measured
        over each clip's valid samples; padding stays zero and the result is on the 16-bit grid."""
        batch, samples = clean.shape
        device = clean.device
        mask = valid_mask(lengths, samples).float()
        wanted = torch.full((batch,), float(self.snr_db), device=device)
        if snr_db is not None:
            wanted = torch.as_tensor(snr_db, dtype=torch.float32, device=device).reshape(batch)
        if self.distribution == "gaussian":
            noise = torch.randn(clean.shape, device=device, generator=generator)
        else:
            noise = torch.rand(clean.shape, device=device, generator=generator) * 2 - 1
        noise = noise * mask
        signal_power = (clean.double() ** 2).sum(1) / lengths.clamp(min=1)
        noise_power = (noise.double() ** 2).sum(1) / lengths.clamp(min=1)
        gain = snr_gain(signal_power, noise_power.clamp(min=1e-20), wanted.double())
        return quantize((clean + noise * gain.float().unsqueeze(1)).clamp(-1.0, 1.0)) * mask
