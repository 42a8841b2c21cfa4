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
from lit_app.audio.noise import snr_gain, spectral_slope_noise
from lit_app.audio.pcm import quantize


class NoiseControl(Attack):
    """White, uniform or coloured noise scaled to an SNR per clip.

    Args:
        snr_db: signal-to-noise ratio of the added noise, dB, used when a call gives no per-clip ``snr_db``.
        distribution: ``gaussian`` or ``uniform`` white noise, or ``coloured``: Gaussian noise whose power
            spectrum goes as ``f ** slope``, the slope drawn per clip from ``slopes``.
        slopes: range of the ``coloured`` noise's spectral slopes (0 white, -1 pink, -2 brown, +1 blue, as the
            synthetic corpora's background noise).
        min_abs_slope: slopes nearer 0 than this are left out of the range (uniform over what remains), so that
            white noise stays unseen by a detector trained on these clips.
    """

    name = "noise"
    # White noise's sets were built before the colours existed; their manifests must still match.
    recorded_unless = {"slopes": (-2.0, 1.0), "min_abs_slope": 0.0}

    def __init__(
        self,
        snr_db: float = 30.0,
        distribution: Literal["gaussian", "uniform", "coloured"] = "gaussian",
        slopes: tuple[float, float] = (-2.0, 1.0),
        min_abs_slope: float = 0.0,
    ) -> None:
        if distribution not in ("gaussian", "uniform", "coloured"):
            raise ValueError(f"distribution must be 'gaussian', 'uniform' or 'coloured', got {distribution!r}")
        low, high = slopes
        if low > high:
            raise ValueError(f"slopes must be a (low, high) range, got {slopes}")
        if min_abs_slope < 0 or (min_abs_slope > 0 and -min_abs_slope <= low and high <= min_abs_slope):
            raise ValueError(f"min_abs_slope {min_abs_slope} leaves nothing of slopes {slopes}")
        self.snr_db = snr_db
        self.distribution = distribution
        self.slopes = (float(low), float(high))
        self.min_abs_slope = min_abs_slope

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

    def draw_slopes(self, batch: int, device: torch.device, generator: torch.Generator) -> torch.Tensor:
        """``[batch]`` slopes, uniform over ``slopes`` without ``(-min_abs_slope, min_abs_slope)``."""
        low, high = self.slopes
        gap_low, gap_high = max(low, -self.min_abs_slope), min(high, self.min_abs_slope)
        gap = max(gap_high - gap_low, 0.0)
        drawn = low + (high - low - gap) * torch.rand(batch, device=device, generator=generator)
        return torch.where(drawn < gap_low, drawn, drawn + gap)

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
        elif self.distribution == "coloured":
            noise = spectral_slope_noise(clean.shape, self.draw_slopes(batch, device, generator), generator)
        else:
            noise = torch.rand(clean.shape, device=device, generator=generator) * 2 - 1
        noise = noise * mask
        signal_power = (clean.double() ** 2).sum(1) / lengths.clamp(min=1)
        noise_power = (noise.double() ** 2).sum(1) / lengths.clamp(min=1)
        gain = snr_gain(signal_power, noise_power.clamp(min=1e-20), wanted.double())
        return quantize((clean + noise * gain.float().unsqueeze(1)).clamp(-1.0, 1.0)) * mask
