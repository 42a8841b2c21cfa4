"""Differentiable feature front-ends (waveform in, ``[..., features, frames]`` out).

They are plain ``nn.Module``s built from torchaudio transforms, so they run on any device and attacks can
back-propagate through them to the waveform.
"""

from __future__ import annotations

import torch
import torchaudio.functional as AF
import torchaudio.transforms as T
from torch import nn


def ms_to_samples(milliseconds: float, sample_rate: int) -> int:
    return int(round(milliseconds * sample_rate / 1000))


def next_power_of_two(n: int) -> int:
    return 1 << (n - 1).bit_length()


class LogMelSpectrogram(nn.Module):
    """Log mel filter-bank energies.

    Args:
        sample_rate: input sample rate in Hz.
        n_mels: number of mel filters.
        win_ms: analysis window length in milliseconds (Hann window).
        hop_ms: hop between frames in milliseconds.
        n_fft: FFT size; the next power of two above the window by default.
        f_min: lowest filter edge in Hz.
        f_max: highest filter edge in Hz; Nyquist by default.
        log_eps: floor added before the logarithm, keeps gradients finite on silence.
        power: what the filters sum: 2 the power spectrum, 1 its magnitude (TensorFlow's ``Mfcc`` op).
        centred: frames centred on ``k * hop`` (the clip reflected at its ends); ``False`` frames as
            TensorFlow's ``audio_spectrogram``: window ``k`` covers samples ``[k * hop, k * hop + window)``
            and only whole windows count (98 frames for 1 s at 30 ms / 10 ms instead of 101).
    """

    def __init__(
        self,
        sample_rate: int = 16000,
        n_mels: int = 40,
        win_ms: float = 30.0,
        hop_ms: float = 10.0,
        n_fft: int | None = None,
        f_min: float = 20.0,
        f_max: float | None = None,
        log_eps: float = 1e-6,
        power: float = 2.0,
        centred: bool = True,
    ) -> None:
        super().__init__()
        self.win_length = ms_to_samples(win_ms, sample_rate)
        self.hop_length = ms_to_samples(hop_ms, sample_rate)
        self.log_eps = log_eps
        self.n_mels = n_mels
        self.centred = centred
        n_fft = n_fft or next_power_of_two(self.win_length)
        # torchaudio centres a shorter window inside each FFT frame; padding the clip by that offset on both
        # sides puts window k at sample k * hop, as TensorFlow's zero-padded-at-the-end frames have it.
        self.window_offset = (n_fft - self.win_length) // 2
        self.mel = T.MelSpectrogram(
            sample_rate=sample_rate,
            n_fft=n_fft,
            win_length=self.win_length,
            hop_length=self.hop_length,
            f_min=f_min,
            f_max=f_max,
            n_mels=n_mels,
            power=power,
            center=centred,
        )

    def num_frames(self, num_samples: int) -> int:
        """Frames produced for ``num_samples`` input samples."""
        if self.centred:
            return num_samples // self.hop_length + 1
        return max(num_samples - self.win_length, 0) // self.hop_length + 1

    def forward(self, waveform: torch.Tensor) -> torch.Tensor:
        if not self.centred:
            # A clip shorter than one window gets one frame, zero-padded at its end.
            short = max(self.win_length - waveform.shape[-1], 0)
            pad = self.window_offset
            waveform = nn.functional.pad(waveform, (pad, self.mel.spectrogram.n_fft - self.win_length - pad + short))
        return torch.log(self.mel(waveform) + self.log_eps)


class MFCC(nn.Module):
    """Mel-frequency cepstral coefficients: DCT-II (orthonormal) of log mel energies.

    Args:
        sample_rate: input sample rate in Hz.
        n_mfcc: number of cepstral coefficients kept.
        n_mels: number of mel filters.
        win_ms: analysis window length in milliseconds.
        hop_ms: hop between frames in milliseconds.
        n_fft: FFT size; the next power of two above the window by default.
        f_min: lowest filter edge in Hz.
        f_max: highest filter edge in Hz; Nyquist by default.
        power: what the filters sum: 2 the power spectrum, 1 its magnitude (TensorFlow's ``Mfcc`` op).
        centred: centred frames, or TensorFlow's (see :class:`LogMelSpectrogram`).
    """

    def __init__(
        self,
        sample_rate: int = 16000,
        n_mfcc: int = 40,
        n_mels: int = 40,
        win_ms: float = 30.0,
        hop_ms: float = 10.0,
        n_fft: int | None = None,
        f_min: float = 20.0,
        f_max: float | None = None,
        power: float = 2.0,
        centred: bool = True,
    ) -> None:
        super().__init__()
        if n_mfcc > n_mels:
            raise ValueError(f"n_mfcc ({n_mfcc}) cannot exceed n_mels ({n_mels})")
        self.log_mel = LogMelSpectrogram(
            sample_rate, n_mels, win_ms, hop_ms, n_fft, f_min, f_max, power=power, centred=centred
        )
        self.n_mfcc = n_mfcc
        self.register_buffer("dct", AF.create_dct(n_mfcc, n_mels, norm="ortho"), persistent=False)

    def num_frames(self, num_samples: int) -> int:
        return self.log_mel.num_frames(num_samples)

    def forward(self, waveform: torch.Tensor) -> torch.Tensor:
        log_mel = self.log_mel(waveform)  # [..., n_mels, frames]
        return torch.matmul(log_mel.transpose(-1, -2), self.dct).transpose(-1, -2)
