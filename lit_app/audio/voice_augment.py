"""Batched augmentation that makes a few synthetic voices sound like many: speed, colour, room, codec, vocoder.

A victim trained on one speech engine learns that engine's voice as much as the words (issue 25: the main job's
keyword spotter recognised 29% of another synthesiser's keywords). Each change here moves a clip the way another
engine, speaker or recording chain would, and runs on the batch's device during training:

- **speed** (Kaldi's speed perturbation): resampling by a ratio near 1 scales tempo, pitch and formants together,
  as a longer or shorter vocal tract and a slower or faster speaker would;
- **colour**: a random smooth gain over frequency (a few dB per octave band, a random spectral tilt, and
  sometimes a band limit), as another synthesiser's spectral envelope, microphone or channel would;
- **room**: convolution with a simulated room impulse response (direct sound plus exponentially decaying noise
  with a random reverberation time);
- **codec**: 8-bit mu-law coding, as telephony and low-rate codecs leave it;
- **vocoder** (our option): LPC resynthesis on a new pitch contour with a pulse-train excitation
  (:class:`~lit_app.audio.lpc_vocoder.LPCVocoder`), as a new speaker and a formant synthesiser would; after a speed
  change, which scales the formants, it is vocal-tract-length perturbation with a pitch of its own. With
  ``vocoder_formants`` it keeps only a few formants of each voiced frame, as a formant synthesiser's spectrum has.
"""

from __future__ import annotations

import math

import torch
import torchaudio.functional as AF
import torchaudio.transforms as T
from torch import nn

from lit_app.audio.lpc_vocoder import LPCVocoder

#: Speed ratios as (original, new) sample counts: small integers keep torchaudio's resampling kernels short.
SPEED_RATIOS = ((10, 9), (20, 19), (1, 1), (19, 20), (9, 10), (8, 9), (9, 8))


class VoiceAugment(nn.Module):
    """Speed, vocoder, spectral colour, room and codec perturbation of a ``[batch, samples]`` batch of clips in [-1, 1].

    Each clip gets each change independently with its probability; the result keeps the input's length (speed
    changes are centred, cut or zero-padded) and peak level.

    Args:
        speed_probability: share of clips resampled by a ratio from :data:`SPEED_RATIOS` (0.89-1.13).
        colour_probability: share of clips given a random spectral colour.
        colour_db: largest gain of a colour's control points, dB (the tilt adds up to as much again).
        band_limit_probability: share of coloured clips whose band also ends at a random cutoff.
        cutoff_hz_range: range of that cutoff, Hz.
        reverb_probability: share of clips convolved with a simulated room.
        rt60_range: range of the room's reverberation time, seconds.
        codec_probability: share of clips mu-law coded to 8 bits.
        vocoder_probability: share of clips resynthesised by an :class:`LPCVocoder` (after the speed change).
        vocoder_f0_range_hz: range of the vocoder's new pitch, Hz.
        vocoder_formants: how many resonances the vocoder keeps of a voiced frame's envelope (0: the whole
            envelope; :class:`LPCVocoder`'s ``formants``).
        vocoder_formant_scale_range: range of the per-clip factor on those formants' frequencies
            (:class:`LPCVocoder`'s ``formant_scale_range``).
        vocoder_vowel_scale_range: range of the per-clip factors on the first and on the second of those formants,
            one each (:class:`LPCVocoder`'s ``vowel_scale_range``: the vowel moves, as in another accent).
        sample_rate: the clips' sample rate.
    """

    def __init__(
        self,
        speed_probability: float = 0.5,
        colour_probability: float = 0.5,
        colour_db: float = 6.0,
        band_limit_probability: float = 0.3,
        cutoff_hz_range: tuple[float, float] = (2500.0, 7000.0),
        reverb_probability: float = 0.3,
        rt60_range: tuple[float, float] = (0.1, 0.6),
        codec_probability: float = 0.1,
        vocoder_probability: float = 0.0,
        vocoder_f0_range_hz: tuple[float, float] = (75.0, 250.0),
        vocoder_formants: int = 0,
        vocoder_formant_scale_range: tuple[float, float] = (1.0, 1.0),
        vocoder_vowel_scale_range: tuple[float, float] = (1.0, 1.0),
        sample_rate: int = 16000,
    ) -> None:
        super().__init__()
        for name, p in (("speed_probability", speed_probability), ("colour_probability", colour_probability),
                        ("band_limit_probability", band_limit_probability),
                        ("reverb_probability", reverb_probability), ("codec_probability", codec_probability),
                        ("vocoder_probability", vocoder_probability)):
            if not 0.0 <= p <= 1.0:
                raise ValueError(f"{name} must be between 0 and 1, got {p}")
        self.speed_probability = speed_probability
        self.colour_probability = colour_probability
        self.colour_db = colour_db
        self.band_limit_probability = band_limit_probability
        self.cutoff_hz_range = cutoff_hz_range
        self.reverb_probability = reverb_probability
        self.rt60_range = rt60_range
        self.codec_probability = codec_probability
        self.vocoder_probability = vocoder_probability
        self.vocoder = LPCVocoder(f0_range_hz=vocoder_f0_range_hz, formants=vocoder_formants,
                                  formant_scale_range=vocoder_formant_scale_range,
                                  vowel_scale_range=vocoder_vowel_scale_range, sample_rate=sample_rate)
        self.sample_rate = sample_rate
        # Each ratio's resampling kernel, made once rather than per batch (ratio 1: no change).
        self.resamplers = nn.ModuleList(T.Resample(original, new) if original != new else nn.Identity()
                                        for original, new in SPEED_RATIOS)

    def forward(self, clips: torch.Tensor) -> torch.Tensor:
        return self.perturb(clips)[0]

    def utterances(self, waveforms: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The same changes to a padded batch of utterances of ``lengths`` samples (a speech recogniser's batch):
        a speed change keeps an utterance's start and changes its length (the batch widens when one grows), and
        the padding stays silent. Returns the waveforms and their new lengths."""
        out, new_lengths = self.perturb(waveforms, lengths)
        assert new_lengths is not None
        return out, new_lengths

    def perturb(self, audio: torch.Tensor, lengths: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
        """:meth:`forward` for clips (``lengths`` ``None``: every sample counts, lengths are kept), or
        :meth:`utterances`."""
        speed, colour, reverb, codec = (self.chosen(audio, p) for p in (
            self.speed_probability, self.colour_probability, self.reverb_probability, self.codec_probability))
        # Drawn only when used, so that configs without the vocoder keep their random streams (and results).
        vocoder = self.chosen(audio, self.vocoder_probability) if self.vocoder_probability else torch.zeros_like(speed)
        touched = speed | vocoder | colour | reverb | codec
        if not touched.any():
            return audio, lengths
        peak = audio.abs().amax(1, keepdim=True)
        if lengths is None:
            out = self.speed(audio, speed)
        else:
            out, lengths = self.speed_utterances(audio, lengths, speed)
            audio = nn.functional.pad(audio, (0, out.shape[1] - audio.shape[1]))
        if vocoder.any():
            out = out.clone() if out is audio else out
            out[vocoder] = self.vocoder(out[vocoder])
        out = self.reverb(self.colour(out, colour), reverb)
        if codec.any():
            out = out.clone() if out is audio else out
            out[codec] = AF.mu_law_decoding(AF.mu_law_encoding(out[codec].clamp(-1.0, 1.0), 256), 256)
        if lengths is not None:  # a room's tail and a colour's ringing do not reach into the padding
            out = out * (torch.arange(out.shape[1], device=out.device) < lengths.unsqueeze(1))
        # Back to the clip's own peak: every change above may move the level, which other augmentation sets.
        level = peak / out.abs().amax(1, keepdim=True).clamp_min(1e-8)
        return torch.where(touched.unsqueeze(1), (out * level).clamp(-1.0, 1.0), audio), lengths

    @staticmethod
    def chosen(clips: torch.Tensor, probability: float) -> torch.Tensor:
        return torch.rand(clips.shape[0], device=clips.device) < probability

    def speed(self, clips: torch.Tensor, chosen: torch.Tensor) -> torch.Tensor:
        """Resample the chosen clips by a random ratio each, centred back to the input length."""
        if not chosen.any():
            return clips
        clips = clips.clone()
        length = clips.shape[1]
        ratio = torch.randint(len(SPEED_RATIOS), (clips.shape[0],), device=clips.device)
        for index, resample in enumerate(self.resamplers):
            rows = (chosen & (ratio == index)).nonzero().squeeze(1)
            if rows.numel() and not isinstance(resample, nn.Identity):
                clips[rows] = centred(resample(clips[rows]), length)
        return clips

    def speed_utterances(self, waveforms: torch.Tensor, lengths: torch.Tensor,
                         chosen: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Resample the chosen utterances by a random ratio each, from their start: the new waveforms (as wide as
        the longest) and lengths."""
        if not chosen.any():
            return waveforms, lengths
        ratio = torch.randint(len(SPEED_RATIOS), (waveforms.shape[0],), device=waveforms.device)
        speech = [waveforms[row, : int(lengths[row])] for row in range(waveforms.shape[0])]
        for row in chosen.nonzero().squeeze(1).tolist():
            resample = self.resamplers[int(ratio[row])]
            if not isinstance(resample, nn.Identity):
                speech[row] = resample(speech[row].unsqueeze(0)).squeeze(0)
        new_lengths = torch.tensor([len(s) for s in speech], device=lengths.device, dtype=lengths.dtype)
        out = waveforms.new_zeros(waveforms.shape[0], max(waveforms.shape[1], int(new_lengths.max())))
        for row, samples in enumerate(speech):
            out[row, : samples.numel()] = samples
        return out, new_lengths

    def colour(self, clips: torch.Tensor, chosen: torch.Tensor) -> torch.Tensor:
        """Multiply the chosen clips' spectra by random smooth gains: octave control points, a tilt, a cutoff."""
        if not chosen.any():
            return clips
        rows = chosen.nonzero().squeeze(1)
        spectrum = torch.fft.rfft(clips[rows])
        count, bins = spectrum.shape
        device = clips.device
        frequency = torch.fft.rfftfreq(clips.shape[1], 1.0 / self.sample_rate, device=device)
        # Control points an octave apart from 125 Hz, gains interpolated over log frequency: a smooth envelope.
        octaves = torch.log2(frequency.clamp_min(125.0) / 125.0)
        points = math.ceil(math.log2(self.sample_rate / 2 / 125.0)) + 1
        gains_db = (torch.rand(count, points, device=device) * 2 - 1) * self.colour_db
        low = octaves.floor().long().clamp(max=points - 2)
        weight = (octaves - low).clamp(0.0, 1.0)
        envelope = gains_db[:, low] * (1 - weight) + gains_db[:, low + 1] * weight
        tilt = (torch.rand(count, 1, device=device) * 2 - 1) * self.colour_db / (points - 1)
        envelope = envelope + tilt * octaves
        low_hz, high_hz = self.cutoff_hz_range
        cutoff = low_hz + (high_hz - low_hz) * torch.rand(count, 1, device=device)
        limited = torch.rand(count, 1, device=device) < self.band_limit_probability
        # A steep but smooth edge (60 dB over a third of an octave) rather than a brick wall, which would ring.
        above = torch.log2(frequency / cutoff).clamp_min(0.0) * 3.0
        envelope = envelope - limited * (60.0 * above.clamp(max=1.0))
        coloured = torch.fft.irfft(spectrum * 10.0 ** (envelope / 20.0), n=clips.shape[1])
        clips = clips.clone()
        clips[rows] = coloured
        return clips

    def reverb(self, clips: torch.Tensor, chosen: torch.Tensor) -> torch.Tensor:
        """Convolve the chosen clips with simulated room impulse responses (kept to the input length)."""
        if not chosen.any():
            return clips
        rows = chosen.nonzero().squeeze(1)
        count, device = rows.numel(), clips.device
        low, high = self.rt60_range
        rt60 = low + (high - low) * torch.rand(count, 1, device=device)
        taps = int(high * self.sample_rate)
        time = torch.arange(taps, device=device) / self.sample_rate
        # Energy falls 60 dB in rt60 seconds: amplitude exp(-6.91 t / rt60).
        tail = torch.randn(count, taps, device=device) * torch.exp(-6.91 * time / rt60)
        tail[:, 0] = 0.0
        direct_to_reverberant = 10.0 ** ((torch.rand(count, 1, device=device) * 10.0) / 20.0)  # 0-10 dB
        response = tail / tail.norm(dim=1, keepdim=True).clamp_min(1e-8) / direct_to_reverberant
        response[:, 0] = 1.0
        wet = AF.fftconvolve(clips[rows], response)[:, : clips.shape[1]]
        clips = clips.clone()
        clips[rows] = wet
        return clips


def centred(clips: torch.Tensor, length: int) -> torch.Tensor:
    """``[batch, n]`` clips cut or zero-padded about their centre to ``length`` samples."""
    n = clips.shape[1]
    if n >= length:
        start = (n - length) // 2
        return clips[:, start : start + length]
    before = (length - n) // 2
    return nn.functional.pad(clips, (before, length - n - before))
