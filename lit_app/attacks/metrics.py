"""Distortion metrics of adversarial examples, measured on the 16-bit clips that are written to disk.

All attacks work on the 16-bit grid: a sample value ``k / 32768`` stands for the integer ``k``. Bounds and
step sizes in the attack settings are in these *int16 units* (1 = one least-significant bit), as in
Carlini & Wagner's paper (bound 2000, noise std 2).
"""

from __future__ import annotations

import torch

from lit_app.audio.pcm import FULL_SCALE, quantize  # noqa: F401  (the attacks' grid, defined with the audio)


def valid_mask(lengths: torch.Tensor, num_samples: int) -> torch.Tensor:
    """``[batch, num_samples]`` boolean mask of the samples inside each clip."""
    return torch.arange(num_samples, device=lengths.device).unsqueeze(0) < lengths.unsqueeze(1)


def linf_int16(clean: torch.Tensor, adversarial: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """Largest absolute sample change of each clip, in int16 units."""
    delta = (adversarial - clean) * valid_mask(lengths.to(clean.device), clean.shape[1])
    return torch.round(delta.abs().amax(1) * FULL_SCALE)


def db_x(clean: torch.Tensor, adversarial: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """Carlini & Wagner's distortion ``20 log10 max|d| - 20 log10 max|x|`` per clip (``-inf`` for d = 0)."""
    mask = valid_mask(lengths.to(clean.device), clean.shape[1])
    peak_delta = ((adversarial - clean) * mask).abs().amax(1).double()
    peak_clean = (clean * mask).abs().amax(1).double().clamp(min=1.0 / FULL_SCALE)
    return (20 * torch.log10(peak_delta) - 20 * torch.log10(peak_clean)).float()


def snr_db(clean: torch.Tensor, adversarial: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """Signal-to-noise ratio ``10 log10(sum x^2 / sum d^2)`` of each clip over its valid samples (``inf`` for d = 0)."""
    mask = valid_mask(lengths.to(clean.device), clean.shape[1])
    signal = (clean.double() * mask).pow(2).sum(1)
    noise = ((adversarial.double() - clean.double()) * mask).pow(2).sum(1)
    return (10 * torch.log10(signal.clamp(min=1e-20)) - 10 * torch.log10(noise)).float()
