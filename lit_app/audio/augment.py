"""Batched waveform augmentation that runs on the device the batch is on."""

from __future__ import annotations

import torch
from torch import nn

from lit_app.audio.noise import snr_gain


class TimeShiftAndNoise(nn.Module):
    """Random time shift and background-noise mixing for a ``[batch, samples]`` batch of clips.

    As in TensorFlow's speech-commands example, each clip moves by up to ``max_shift`` samples (the gap
    filled with zeros) and, with probability ``noise_probability``, gets a random segment of background
    noise. The noise level is set by a signal-to-noise ratio drawn from ``snr_db_range`` rather than by an
    absolute volume, because clip levels vary widely.

    Args:
        max_shift: largest shift in samples (1600 = 100 ms at 16 kHz).
        noise_probability: share of clips that get background noise.
        snr_db_range: range of the signal-to-noise ratio of the added noise, dB.
    """

    def __init__(
        self, max_shift: int = 1600, noise_probability: float = 0.8, snr_db_range: tuple[float, float] = (5.0, 30.0)
    ) -> None:
        super().__init__()
        self.max_shift = max_shift
        self.noise_probability = noise_probability
        self.snr_db_range = snr_db_range
        self.register_buffer("noise", torch.zeros(0), persistent=False)

    def set_noise(self, recordings: list[torch.Tensor]) -> None:
        """Background recordings (1-D float tensors) to draw noise from; none disables mixing."""
        self.noise = torch.cat([r.flatten().float() for r in recordings]) if recordings else torch.zeros(0)

    def forward(self, clips: torch.Tensor) -> torch.Tensor:
        batch, length = clips.shape
        device = clips.device
        positions = torch.arange(length, device=device)
        if self.max_shift > 0:
            shift = torch.randint(-self.max_shift, self.max_shift + 1, (batch, 1), device=device)
            source = positions.unsqueeze(0) - shift
            inside = (source >= 0) & (source < length)
            clips = torch.gather(clips, 1, source.clamp(0, length - 1)) * inside
        if self.noise.numel() > length and self.noise_probability > 0:
            start = torch.randint(0, self.noise.numel() - length, (batch, 1), device=device)
            segments = self.noise.to(device)[start + positions.unsqueeze(0)]
            low, high = self.snr_db_range
            snr_db = low + (high - low) * torch.rand(batch, 1, device=device)
            signal_power = clips.pow(2).mean(1, keepdim=True)
            noise_power = segments.pow(2).mean(1, keepdim=True).clamp(min=1e-12)
            gain = snr_gain(signal_power, noise_power, snr_db)
            gain = gain * (torch.rand(batch, 1, device=device) < self.noise_probability)
            clips = clips + gain * segments
        return clips.clamp(-1.0, 1.0)
