"""Noise at a signal-to-noise ratio: the one formula behind augmentation, noise flooding, noise controls and the
synthetic corpora's background noise.

Not ``torchaudio.functional.add_noise``: it computes the same gain in the log domain, which moves about one
stored sample in 200,000 of the noise-control sets by one int16 step; the stored sets stay as they were built.
"""

from __future__ import annotations

import numpy as np
import torch


def snr_gain(signal_power, noise_power, snr_db):
    """The factor for noise of mean power ``noise_power`` so that ``signal_power`` over its power is ``snr_db`` dB.

    Works alike on Python floats, NumPy arrays and tensors (elementwise), in their own precision.
    """
    ratio = signal_power / (noise_power * 10.0 ** (snr_db / 10.0))
    return torch.sqrt(ratio) if isinstance(ratio, torch.Tensor) else np.sqrt(ratio)


def add_white_noise_at_snr(audio: torch.Tensor, lengths: torch.Tensor, snr_db: torch.Tensor) -> torch.Tensor:
    """White Gaussian noise added to each clip at its own SNR (dB), over its valid samples only; clipped to [-1, 1]."""
    inside = (torch.arange(audio.shape[1], device=audio.device)[None, :] < lengths[:, None]).to(audio.dtype)
    noise = torch.randn_like(audio) * inside
    count = lengths.clamp(min=1).to(audio.dtype)
    signal_power = (audio * inside).pow(2).sum(1) / count
    noise_power = noise.pow(2).sum(1).clamp(min=1e-12) / count
    return (audio + snr_gain(signal_power, noise_power, snr_db)[:, None] * noise).clamp(-1.0, 1.0)


def spectral_slope_noise(shape: tuple[int, int], slopes: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """Gaussian noise whose power spectrum goes as ``f ** slope``, one slope per row of ``shape``.

    The slopes of the synthetic corpora's background noise (``lit_app.data.synth.noise.coloured_noise``): 0 white,
    -1 pink, -2 brown, +1 blue, here any value and a batch at a time from a torch generator. Rows have unit mean
    power; the DC bin is removed.

    Args:
        shape: ``(batch, samples)``.
        slopes: ``[batch]`` spectral slopes.
        generator: random source (on the slopes' device).
    """
    white = torch.randn(shape, device=slopes.device, generator=generator)
    spectrum = torch.fft.rfft(white, dim=1)
    bins = torch.arange(spectrum.shape[1], device=slopes.device, dtype=white.dtype).clamp(min=1.0)
    spectrum = spectrum * bins[None, :] ** (slopes.to(white.dtype)[:, None] / 2)
    spectrum[:, 0] = 0
    noise = torch.fft.irfft(spectrum, n=shape[1], dim=1)
    return noise / noise.pow(2).mean(1, keepdim=True).sqrt().clamp(min=1e-12)
