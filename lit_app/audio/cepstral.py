"""Cepstral feature families for the detector: MFCC, IMFCC, LFCC, GFCC, IGFCC and the log spectrogram.

One pipeline, as in the detection papers: pre-emphasis, Hamming-windowed frames without centring, power
spectrum (NFFT 512), a filter bank, log, orthonormal DCT-II. Only the filter bank differs between families:

- ``mfcc``: triangular filters equally spaced on the mel scale (torchaudio's ``melscale_fbanks``);
- ``imfcc``: the mel bank mirrored about the centre of its band (narrow filters at high frequencies, where
  adversarial perturbations that hide under speech energy live);
- ``lfcc``: triangular filters equally spaced in Hz (torchaudio's ``linear_fbanks``);
- ``gfcc`` / ``igfcc``: 4th-order gammatone magnitude responses on the ERB-rate scale, and their mirror image;
- ``logspec``: no filter bank and no DCT, the log power spectrum itself.

Everything is a differentiable ``nn.Module`` made of tensor ops, so it runs on any device and an adaptive
attacker can back-propagate through it to the waveform.
"""

from __future__ import annotations

from typing import Literal

import torch
import torchaudio.functional as AF
import torchaudio.transforms as T
from torch import nn

from lit_app.audio.features import ms_to_samples

FeatureKind = Literal["mfcc", "imfcc", "lfcc", "gfcc", "igfcc", "logspec"]
FEATURE_KINDS: tuple[str, ...] = ("mfcc", "imfcc", "lfcc", "gfcc", "igfcc", "logspec")


def hz_to_erb_rate(hz: torch.Tensor) -> torch.Tensor:
    """Glasberg & Moore ERB-rate (number of ERBs below ``hz``)."""
    return 21.4 * torch.log10(1.0 + 0.00437 * hz)


def erb_rate_to_hz(erb: torch.Tensor) -> torch.Tensor:
    return (10.0 ** (erb / 21.4) - 1.0) / 0.00437


def gammatone_fbanks(
    n_freqs: int, f_min: float, f_max: float, n_filters: int, sample_rate: int, order: int = 4
) -> torch.Tensor:
    """Gammatone filter bank as magnitude responses at the FFT bin frequencies, ``[n_freqs, n_filters]``.

    Centre frequencies are equally spaced on the ERB-rate scale from ``f_min`` to ``f_max``. Each filter is
    the standard closed-form magnitude of an ``order``-th order gammatone,
    ``|H(f)| = (1 + ((f - fc) / b)^2)^(-order / 2)`` with ``b = 1.019 ERB(fc)``
    (Patterson & Holdsworth), peak 1 at ``fc``. torchaudio has no gammatone bank, and this closed form is
    what the FFT-domain GFCC implementations weight the power spectrum with.
    """
    return gammatone_response(bin_frequencies(n_freqs, sample_rate), f_min, f_max, n_filters, order).float()


def bin_frequencies(n_freqs: int, sample_rate: int) -> torch.Tensor:
    """The FFT bins' frequencies in Hz (float64), as torchaudio's filter banks sample them."""
    return torch.linspace(0, sample_rate // 2, n_freqs, dtype=torch.float64)


def gammatone_response(freqs: torch.Tensor, f_min: float, f_max: float, n_filters: int, order: int = 4) -> torch.Tensor:
    """``[len(freqs), n_filters]`` magnitudes of the gammatone bank of :func:`gammatone_fbanks` at ``freqs``."""
    erb_edges = hz_to_erb_rate(torch.tensor([f_min, f_max], dtype=torch.float64))
    centres = erb_rate_to_hz(torch.linspace(float(erb_edges[0]), float(erb_edges[1]), n_filters, dtype=torch.float64))
    bandwidth = 1.019 * 24.7 * (4.37 * centres / 1000.0 + 1.0)
    return (1.0 + ((freqs[:, None] - centres[None, :]) / bandwidth[None, :]) ** 2) ** (-order / 2.0)


def mel_triangles(freqs: torch.Tensor, f_min: float, f_max: float, n_filters: int) -> torch.Tensor:
    """``[len(freqs), n_filters]`` weights at ``freqs`` of the triangular filters that torchaudio's
    ``melscale_fbanks`` (HTK mel scale, no normalisation) builds between ``f_min`` and ``f_max``."""
    mel_edges = 2595.0 * torch.log10(1.0 + torch.tensor([f_min, f_max], dtype=torch.float64) / 700.0)
    edges = 700.0 * (10.0 ** (torch.linspace(float(mel_edges[0]), float(mel_edges[1]), n_filters + 2,
                                             dtype=torch.float64) / 2595.0) - 1.0)
    lower, centre, upper = edges[:-2], edges[1:-1], edges[2:]
    rising = (freqs[:, None] - lower) / (centre - lower)
    falling = (upper - freqs[:, None]) / (upper - centre)
    return torch.minimum(rising, falling).clamp(min=0.0)


def filter_bank(
    kind: FeatureKind, n_freqs: int, n_filters: int, sample_rate: int, f_min: float, f_max: float
) -> torch.Tensor:
    """The ``[n_freqs, n_filters]`` bank of a feature family, filters ordered by rising centre frequency.

    An inverse bank is the direct one mirrored about the centre of its band, ``(f_min + f_max) / 2``: its
    filter ``i`` weighs frequency ``f`` as the direct filter ``n_filters - 1 - i`` weighs ``f_min + f_max - f``,
    so it covers the same band ``[f_min, f_max]`` with narrow filters at the top. (For the full band
    ``[0, Nyquist]`` this is the direct bank flipped along frequency and filter order.)
    """
    if f_min < 0 or f_max <= f_min or f_max > sample_rate / 2:
        raise ValueError(f"the filter band must satisfy 0 <= f_min < f_max <= {sample_rate / 2} Hz (Nyquist), "
                         f"got f_min={f_min}, f_max={f_max}")
    if kind == "mfcc":
        return AF.melscale_fbanks(n_freqs, f_min, f_max, n_filters, sample_rate, norm=None, mel_scale="htk")
    if kind == "lfcc":
        return AF.linear_fbanks(n_freqs, f_min, f_max, n_filters, sample_rate)
    if kind == "gfcc":
        return gammatone_fbanks(n_freqs, f_min, f_max, n_filters, sample_rate)
    mirrored = f_min + f_max - bin_frequencies(n_freqs, sample_rate)
    if kind == "imfcc":
        return mel_triangles(mirrored, f_min, f_max, n_filters).flip(1).float()
    if kind == "igfcc":
        return gammatone_response(mirrored, f_min, f_max, n_filters).flip(1).float()
    raise ValueError(f"no filter bank for feature {kind!r}; choose from {FEATURE_KINDS}")


def pre_emphasis(waveform: torch.Tensor, coefficient: float) -> torch.Tensor:
    """``y[n] = x[n] - coefficient * x[n - 1]`` (``y[0] = x[0]``): lifts high frequencies by ~6 dB/octave."""
    if coefficient == 0.0:
        return waveform
    return torch.cat([waveform[..., :1], waveform[..., 1:] - coefficient * waveform[..., :-1]], dim=-1)


class CepstralFeatures(nn.Module):
    """Waveforms ``[..., samples]`` to features ``[..., num_features, frames]`` for one feature family.

    Frames are not centred: frame ``k`` covers samples ``[k * hop, k * hop + n_fft)`` (the window is
    centred inside the FFT frame when shorter), so a 512 ms block at 32 ms / 16 ms gives 31 frames as in the
    follow-up paper.

    Args:
        kind: ``mfcc``, ``imfcc``, ``lfcc``, ``gfcc``, ``igfcc`` or ``logspec``.
        sample_rate: input sample rate in Hz.
        n_coefficients: cepstral coefficients kept (ignored by ``logspec``, which keeps every FFT bin).
        n_filters: filters in the bank.
        win_ms: Hamming window length in milliseconds.
        hop_ms: hop between frames in milliseconds.
        n_fft: FFT size.
        pre_emphasis: pre-emphasis coefficient; 0 disables it.
        f_min: lowest filter edge in Hz.
        f_max: highest filter edge in Hz; Nyquist by default.
        log_eps: floor added before the logarithm: keeps silence finite and its gradient bounded.
    """

    def __init__(
        self,
        kind: FeatureKind = "mfcc",
        sample_rate: int = 16000,
        n_coefficients: int = 40,
        n_filters: int = 40,
        win_ms: float = 25.0,
        hop_ms: float = 10.0,
        n_fft: int = 512,
        pre_emphasis: float = 0.97,
        f_min: float = 0.0,
        f_max: float | None = None,
        log_eps: float = 1e-6,
    ) -> None:
        super().__init__()
        if kind not in FEATURE_KINDS:
            raise ValueError(f"unknown feature {kind!r}; choose from {FEATURE_KINDS}")
        if kind != "logspec" and n_coefficients > n_filters:
            raise ValueError(f"n_coefficients ({n_coefficients}) cannot exceed n_filters ({n_filters})")
        self.kind = kind
        self.win_length = ms_to_samples(win_ms, sample_rate)
        self.hop_length = ms_to_samples(hop_ms, sample_rate)
        if self.win_length > n_fft:
            raise ValueError(f"window ({self.win_length} samples) is longer than n_fft ({n_fft}); raise n_fft")
        self.n_fft = n_fft
        self.pre_emphasis = pre_emphasis
        self.log_eps = log_eps
        # torchaudio's Spectrogram: the same STFT torchaudio's LFCC/MFCC use, so those are exact references.
        self.spectrogram = T.Spectrogram(
            n_fft=n_fft,
            win_length=self.win_length,
            hop_length=self.hop_length,
            window_fn=torch.hamming_window,
            power=2.0,
            center=False,
        )
        n_freqs = n_fft // 2 + 1
        if kind == "logspec":
            self.num_features = n_freqs
            self.register_buffer("bank", torch.zeros(0), persistent=False)
            self.register_buffer("dct", torch.zeros(0), persistent=False)
        else:
            self.num_features = n_coefficients
            bank = filter_bank(kind, n_freqs, n_filters, sample_rate, f_min, f_max or sample_rate / 2)
            self.register_buffer("bank", bank, persistent=False)
            self.register_buffer("dct", AF.create_dct(n_coefficients, n_filters, norm="ortho"), persistent=False)

    def num_frames(self, num_samples: int | torch.Tensor) -> int | torch.Tensor:
        """Frames for ``num_samples`` samples; a clip shorter than ``n_fft`` is padded to one frame."""
        if isinstance(num_samples, torch.Tensor):
            return torch.div((num_samples - self.n_fft).clamp(min=0), self.hop_length, rounding_mode="floor") + 1
        return max(num_samples - self.n_fft, 0) // self.hop_length + 1

    def forward(self, waveform: torch.Tensor) -> torch.Tensor:
        if waveform.shape[-1] < self.n_fft:
            waveform = nn.functional.pad(waveform, (0, self.n_fft - waveform.shape[-1]))
        power = self.spectrogram(pre_emphasis(waveform, self.pre_emphasis))  # [..., n_freqs, frames]
        if self.kind == "logspec":
            return torch.log(power + self.log_eps)
        energies = torch.matmul(power.transpose(-1, -2), self.bank)  # [..., frames, n_filters]
        return torch.matmul(torch.log(energies + self.log_eps), self.dct).transpose(-1, -2)
