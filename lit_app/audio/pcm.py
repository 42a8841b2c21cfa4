"""The 16-bit PCM grid every clip is stored on, and the one scale between int16 samples and floats.

A float sample ``k / 32768`` stands for the int16 sample ``k`` (``-32768 <= k <= 32767``): reading divides by
32768, writing multiplies by 32768, rounds half to even and clips to the int16 range. Every reader and writer of
the app goes through these functions, so a clip is the same numbers whichever path reads it.
"""

from __future__ import annotations

import numpy as np
import torch

FULL_SCALE = 32768.0
INT16_MIN, INT16_MAX = -32768, 32767


def to_pcm16(waveform: torch.Tensor | np.ndarray) -> np.ndarray:
    """A float waveform in [-1, 1] as int16 PCM samples (NumPy, for writing files)."""
    array = waveform.detach().cpu().numpy() if isinstance(waveform, torch.Tensor) else np.asarray(waveform)
    return np.clip(np.round(array.astype(np.float64) * FULL_SCALE), INT16_MIN, INT16_MAX).astype(np.int16)


def float_to_pcm16(waveforms: torch.Tensor) -> torch.Tensor:
    """Float waveforms in [-1, 1] as an int16 tensor (same rounding and clipping as :func:`to_pcm16`)."""
    return torch.round(waveforms.float() * FULL_SCALE).clamp(INT16_MIN, INT16_MAX).to(torch.int16)


def pcm16_to_float(samples: torch.Tensor | np.ndarray) -> torch.Tensor:
    """Int16 samples (tensor or array) as float32 waveforms in [-1, 1)."""
    tensor = torch.from_numpy(np.asarray(samples)) if isinstance(samples, np.ndarray) else samples
    return tensor.to(torch.float32) / FULL_SCALE


def quantize(waveforms: torch.Tensor) -> torch.Tensor:
    """Float waveforms rounded onto the 16-bit grid, still as floats (what :func:`to_pcm16` would write)."""
    return torch.round(waveforms * FULL_SCALE).clamp(INT16_MIN, INT16_MAX) / FULL_SCALE
