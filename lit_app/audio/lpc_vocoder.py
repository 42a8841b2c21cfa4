"""LPC resynthesis with a new pitch: a recorded or diphone voice turned into a formant-synthesiser-like one.

A keyword victim trained without espeak-ng hears only recorded speakers (flite, festival) and recognises espeak-ng's
rule-based formant voices no better than its own unseen voices (issue 25). This vocoder keeps each frame's spectral
envelope (linear prediction, the vocal tract) and replaces the excitation (the glottal source) with a synthetic one:
an impulse train on a smooth, randomly chosen pitch contour in voiced frames and white noise in unvoiced ones, the
source-filter model that formant synthesisers such as espeak-ng (its own and its Klatt voices) build on. Beside speed
perturbation, which scales the formants, it makes a new speaker of each clip: new pitch, new excitation, same words.

With ``formants`` set, a voiced frame's envelope keeps only its lowest resonances (the roots of its prediction
polynomial), each at a fixed bandwidth from Klatt's synthesiser: a formant synthesiser's spectrum, which has those
peaks and nothing between them, where the full envelope also keeps a recorded voice's spectral detail. With
``formant_scale_range`` too, each clip's formants move by one factor: a longer or shorter vocal tract
(vocal-tract-length perturbation) with the pitch left to the new contour, where speed perturbation moves both. With
``vowel_scale_range``, the first two formants of each clip move by two independent factors: the vowel moves in the
F1-F2 plane, where accents differ (a rounded STRUT, RP's GOAT), and a one-syllable keyword is one vowel.

torchaudio has no linear prediction, and librosa's (per frame, in NumPy) would bring a dependency for one function
that cannot run on the training batch's device; Levinson-Durbin over a batch of frames is a few lines of torch.
"""

from __future__ import annotations

import math

import torch
import torchaudio.functional as AF
from torch import nn
from torch.nn import functional as F

#: Klatt's (1980) default bandwidths of the first five formants, Hz.
KLATT_BANDWIDTHS_HZ = (60.0, 90.0, 150.0, 200.0, 200.0)


def levinson_durbin(autocorrelation: torch.Tensor, order: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Prediction-error filters ``[n, order + 1]`` (leading 1) and their error powers ``[n]`` from ``[n, >order]``
    autocorrelations, by the Levinson-Durbin recursion."""
    r = autocorrelation
    a = torch.zeros(r.shape[0], order + 1, dtype=r.dtype, device=r.device)
    a[:, 0] = 1.0
    error = r[:, 0].clone()
    for i in range(1, order + 1):
        reflection = -(a[:, :i] * r[:, 1 : i + 1].flip(1)).sum(1) / error.clamp_min(1e-12)
        a[:, 1:i] = a[:, 1:i] + reflection[:, None] * a[:, 1:i].flip(1)
        a[:, i] = reflection
        error = error * (1.0 - reflection * reflection)
    return a, error


class LPCVocoder(nn.Module):
    """Resynthesise ``[batch, samples]`` clips in [-1, 1] through their frames' LPC envelopes with a new excitation.

    Each clip gets its own pitch contour: a base frequency drawn from ``f0_range_hz`` that moves linearly by a
    relative rate drawn from ``f0_slope_range`` per second (falling, as a statement's intonation does). Frames whose
    normalised autocorrelation peaks above ``voicing_threshold`` at a pitch lag (60-400 Hz) are voiced. The output
    keeps each input clip's length and peak level; a silent clip stays silent.

    Args:
        order: linear-prediction order (18 at 16 kHz: about one pole pair per kHz, plus the glottal and lip tilt).
        frame_ms: analysis frame, ms (Hann-windowed, half-overlapping).
        f0_range_hz: range of the new pitch contours' base frequency, Hz.
        f0_slope_range: range of their relative change per second.
        voicing_threshold: normalised autocorrelation above which a frame is voiced.
        formants: ``0`` keeps each frame's whole envelope; ``n`` (at most 5) keeps a voiced frame's ``n`` lowest
            resonances between 150 Hz and 5 kHz narrower than 600 Hz, at :data:`KLATT_BANDWIDTHS_HZ`, each frame
            at its own level (our option).
        formant_scale_range: range of a per-clip factor on the kept formants' frequencies (``formants`` only;
            ``(1, 1)``: unchanged; 0.85-1.15 spans about the adult male to female difference).
        vowel_scale_range: range of two more per-clip factors, one on the first formant and one on the second
            (``formants`` of 2 or more; ``(1, 1)``: unchanged; our option).
        sample_rate: the clips' sample rate.
    """

    def __init__(
        self,
        order: int = 18,
        frame_ms: float = 25.0,
        f0_range_hz: tuple[float, float] = (75.0, 250.0),
        f0_slope_range: tuple[float, float] = (-0.4, 0.1),
        voicing_threshold: float = 0.35,
        formants: int = 0,
        formant_scale_range: tuple[float, float] = (1.0, 1.0),
        vowel_scale_range: tuple[float, float] = (1.0, 1.0),
        sample_rate: int = 16000,
    ) -> None:
        super().__init__()
        if order < 1:
            raise ValueError(f"order must be at least 1, got {order}")
        if not 0 <= formants <= min(len(KLATT_BANDWIDTHS_HZ), order // 2):
            raise ValueError(f"formants must be between 0 and {min(len(KLATT_BANDWIDTHS_HZ), order // 2)}, got {formants}")
        formant_scale_range = (float(formant_scale_range[0]), float(formant_scale_range[1]))
        vowel_scale_range = (float(vowel_scale_range[0]), float(vowel_scale_range[1]))
        for name, (low, high) in (("formant_scale_range", formant_scale_range), ("vowel_scale_range", vowel_scale_range)):
            if not 0.5 <= low <= high <= 2.0:
                raise ValueError(f"{name} must be (low, high) with 0.5 <= low <= high <= 2, got {(low, high)}")
        if formant_scale_range != (1.0, 1.0) and not formants:
            raise ValueError("formant_scale_range moves the kept formants: set formants too")
        if vowel_scale_range != (1.0, 1.0) and formants < 2:
            raise ValueError("vowel_scale_range moves the first two kept formants: set formants to 2 or more")
        low, high = f0_range_hz
        if not 0.0 < low <= high < sample_rate / 2:
            raise ValueError(f"f0_range_hz must be (low, high) with 0 < low <= high < {sample_rate / 2}, got {f0_range_hz}")
        self.order = order
        self.frame = int(round(frame_ms * sample_rate / 1000)) // 2 * 2
        self.hop = self.frame // 2
        if self.frame <= order:
            raise ValueError(f"frame_ms={frame_ms} gives {self.frame} samples, not more than the order {order}")
        self.f0_range_hz = f0_range_hz
        self.f0_slope_range = f0_slope_range
        self.voicing_threshold = voicing_threshold
        self.formants = formants
        self.formant_scale_range = formant_scale_range
        self.vowel_scale_range = vowel_scale_range
        self.sample_rate = sample_rate
        self.pitch_lags = (int(sample_rate / 400), int(sample_rate / 60))

    def forward(self, clips: torch.Tensor) -> torch.Tensor:
        batch, length = clips.shape
        frame, hop = self.frame, self.hop
        # A frame of padding each side, so the first and last samples sit inside fully overlapped frames.
        padded = F.pad(clips, (frame, 2 * frame))
        frames = padded.unfold(1, frame, hop)
        count = frames.shape[1]
        window = torch.hann_window(frame, periodic=True, dtype=clips.dtype, device=clips.device)
        spectrum = torch.fft.rfft(frames * window, n=2 * frame)
        autocorrelation = torch.fft.irfft(spectrum.abs().pow(2), n=2 * frame)[..., :frame]
        envelope, error = self.envelopes(autocorrelation.reshape(batch * count, frame))
        lags_low, lags_high = self.pitch_lags
        periodicity = autocorrelation[..., lags_low:lags_high].amax(-1) / autocorrelation[..., 0].clamp_min(1e-12)
        voiced = periodicity > self.voicing_threshold
        if self.formants:
            rows = voiced.reshape(-1).nonzero().squeeze(1)
            scale = self.formant_factors(batch, clips)
            envelope = envelope.index_copy(0, rows, self.formant_envelopes(envelope[rows], scale[rows // count]))
        excitation = self.excitation(batch, count, padded.shape[1], voiced, clips)
        # Scale each frame's excitation to the prediction error's power: the frame's level, not the source's.
        power = excitation[..., hop:].pow(2).mean(-1, keepdim=True).clamp_min(1e-12)
        gain = (error.reshape(batch, count, 1) / window.pow(2).sum()).clamp_min(0.0).sqrt()
        excitation = excitation * (gain / power.sqrt())
        numerator = torch.zeros_like(envelope)
        numerator[:, 0] = 1.0
        filtered = AF.lfilter(excitation.reshape(batch * count, -1), envelope, numerator, clamp=False, batching=True)
        # The first hop of each segment only warms the filter up; the frame after it is windowed and overlap-added.
        voiced_frames = filtered[:, hop:].reshape(batch, count, frame) * window
        if self.formants:
            # The gain above is the full envelope's; a frame of fewer resonances is brought to the input frame's energy.
            energy = voiced_frames.pow(2).sum(-1, keepdim=True).clamp_min(1e-12)
            voiced_frames = voiced_frames * (autocorrelation[..., :1].clamp_min(0.0) / energy).sqrt()
        out = F.fold(voiced_frames.transpose(1, 2), output_size=(1, padded.shape[1]), kernel_size=(1, frame),
                     stride=(1, hop)).reshape(batch, -1)[:, frame : frame + length]
        out = torch.nan_to_num(out, nan=0.0, posinf=0.0, neginf=0.0)
        level = clips.abs().amax(1, keepdim=True) / out.abs().amax(1, keepdim=True).clamp_min(1e-8)
        return (out * level).clamp(-1.0, 1.0)

    def envelopes(self, autocorrelation: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Stable all-pole envelopes of frames' autocorrelations: a little white noise and 60 Hz of bandwidth
        widening keep the recursion well conditioned and the formants from ringing."""
        r = autocorrelation[:, : self.order + 1].clone()
        lag = torch.arange(self.order + 1, dtype=r.dtype, device=r.device)
        r = r * torch.exp(-0.5 * (2 * math.pi * 60.0 / self.sample_rate * lag) ** 2)
        r[:, 0] = r[:, 0] * (1.0 + 1e-4) + 1e-10
        return levinson_durbin(r, self.order)

    def formant_factors(self, batch: int, like: torch.Tensor) -> torch.Tensor:
        """``[batch, formants]`` factors on each clip's kept formants: one for all of them, times one each for F1
        and F2. Each is drawn only when its range varies, so that vocoders without it keep their random streams."""

        def draw(low: float, high: float, shape: tuple[int, ...]) -> torch.Tensor:
            if high > low:
                return low + (high - low) * torch.rand(shape, device=like.device, dtype=like.dtype)
            return torch.full(shape, low, device=like.device, dtype=like.dtype)

        factors = draw(*self.formant_scale_range, (batch, 1)).expand(batch, self.formants).clone()
        if self.vowel_scale_range != (1.0, 1.0):
            factors[:, :2] *= draw(*self.vowel_scale_range, (batch, 2))
        return factors

    def formant_envelopes(self, envelope: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
        """``[n, order + 1]`` prediction-error filters rebuilt from each one's ``formants`` lowest resonances (roots
        between 150 Hz and 5 kHz with bandwidths under 600 Hz) at Klatt's bandwidths, their frequencies times
        ``scale`` (``[n, formants]``, one factor each; kept below 7.5 kHz); missing ones are left out."""
        count, width = envelope.shape
        companion = torch.zeros(count, width - 1, width - 1, dtype=envelope.dtype, device=envelope.device)
        companion[:, 0] = -envelope[:, 1:]
        companion[:, 1:, :-1] = torch.eye(width - 2, dtype=envelope.dtype, device=envelope.device)
        roots = torch.linalg.eigvals(companion)
        hz = roots.angle() * self.sample_rate / (2 * math.pi)
        bandwidth = -roots.abs().clamp_min(1e-6).log() * self.sample_rate / math.pi
        resonant = (hz > 150.0) & (hz < 5000.0) & (bandwidth < 600.0)
        # The lowest resonances first; the others sort to the end and are dropped.
        order = torch.where(resonant, hz, torch.full_like(hz, float("inf"))).sort(-1)
        polynomial = torch.zeros_like(envelope)
        polynomial[:, 0] = 1.0
        for index in range(self.formants):
            frequency = hz.gather(1, order.indices[:, index : index + 1])
            frequency = (frequency * scale[:, index : index + 1]).clamp(max=7500.0)
            present = order.values[:, index : index + 1].isfinite()
            radius = math.exp(-math.pi * KLATT_BANDWIDTHS_HZ[index] / self.sample_rate) * present
            first = -2.0 * radius * torch.cos(2 * math.pi * frequency / self.sample_rate)
            # Multiply by (1 + first z^-1 + radius^2 z^-2): a resonance, or 1 where there is none.
            previous = polynomial.clone()
            polynomial[:, 1:] += first * previous[:, :-1]
            polynomial[:, 2:] += radius**2 * previous[:, :-2]
        return polynomial

    def excitation(self, batch: int, count: int, samples: int, voiced: torch.Tensor,
                   like: torch.Tensor) -> torch.Tensor:
        """``[batch, count, hop + frame]`` segments: each frame with one hop of lead-in, pulses or noise."""
        device, dtype = like.device, like.dtype
        time = torch.arange(samples, device=device, dtype=dtype) / self.sample_rate
        low, high = self.f0_range_hz
        base = low + (high - low) * torch.rand(batch, 1, device=device, dtype=dtype)
        slope_low, slope_high = self.f0_slope_range
        slope = slope_low + (slope_high - slope_low) * torch.rand(batch, 1, device=device, dtype=dtype)
        pitch = (base * (1.0 + slope * time)).clamp_min(low / 2)
        cycles = torch.cumsum(pitch / self.sample_rate, 1)
        pulses = F.pad((cycles[:, 1:].floor() > cycles[:, :-1].floor()).to(dtype), (1, 0))
        noise = torch.randn(batch, samples, device=device, dtype=dtype)
        segment = self.frame + self.hop
        pulse_segments = F.pad(pulses, (self.hop, 0)).unfold(1, segment, self.hop)[:, :count]
        noise_segments = F.pad(noise, (self.hop, 0)).unfold(1, segment, self.hop)[:, :count]
        return torch.where(voiced.unsqueeze(-1), pulse_segments, noise_segments)
