"""Voice augmentation of keyword training clips: each change does what it says, and only to the clips it picks."""

import math

import pytest
import torch

from lit_app.audio.voice_augment import SPEED_RATIOS, VoiceAugment, centred

RATE = 16000


def tones(frequency: float, batch: int = 8, level: float = 0.5) -> torch.Tensor:
    t = torch.arange(RATE) / RATE
    return (level * torch.sin(2 * math.pi * frequency * t)).repeat(batch, 1)


def peak_frequency(clips: torch.Tensor) -> torch.Tensor:
    spectrum = torch.fft.rfft(clips[:, 4000:12000]).abs()
    return spectrum.argmax(1).float() * RATE / 8000


def band_energy(clips: torch.Tensor, low: float, high: float) -> torch.Tensor:
    spectrum = torch.fft.rfft(clips).abs().pow(2)
    frequency = torch.fft.rfftfreq(clips.shape[1], 1 / RATE)
    return spectrum[:, (frequency >= low) & (frequency < high)].sum(1)


def only(**probabilities: float) -> VoiceAugment:
    settings = dict(speed_probability=0.0, colour_probability=0.0, reverb_probability=0.0, codec_probability=0.0)
    return VoiceAugment(**{**settings, **probabilities})


def test_nothing_chosen_changes_nothing():
    clips = tones(440)
    assert torch.equal(only()(clips), clips)


def test_speed_scales_pitch_by_one_of_its_ratios_and_keeps_length_and_peak():
    torch.manual_seed(0)
    clips = tones(500, batch=32)
    out = only(speed_probability=1.0)(clips)
    assert out.shape == clips.shape
    assert torch.allclose(out.abs().amax(1), clips.abs().amax(1), atol=1e-6)
    allowed = {round(500 * original / new) for original, new in SPEED_RATIOS}
    seen = {round(f) for f in peak_frequency(out).tolist()}
    assert seen <= {f + d for f in allowed for d in (-1, 0, 1)} and len(seen) > 3


def test_utterances_change_length_with_speed_and_keep_their_start_and_silent_padding():
    torch.manual_seed(0)
    lengths = torch.tensor([RATE, 12000, 8000, 10000] * 4)
    waveforms = tones(500, batch=16) * (torch.arange(RATE) < lengths.unsqueeze(1))
    out, new_lengths = only(speed_probability=1.0, reverb_probability=1.0).utterances(waveforms, lengths)
    ratios = {original / new for original, new in SPEED_RATIOS}
    assert out.shape == (16, int(new_lengths.max())) and out.shape[1] >= RATE
    assert all(any(abs(n / old - 1 / r) < 1e-3 for r in ratios) for n, old in zip(new_lengths.tolist(), lengths.tolist()))
    assert len(set((new_lengths / lengths).tolist())) > 2
    for row, n in enumerate(new_lengths.tolist()):
        assert out[row, n:].abs().sum() == 0 and out[row, :200].abs().amax() > 0.1  # the speech still starts at 0
    assert torch.allclose(out.abs().amax(1), waveforms.abs().amax(1), atol=1e-6)
    unchanged, same = only().utterances(waveforms, lengths)
    assert unchanged is waveforms and same is lengths


def test_colour_band_limit_removes_the_band_above_the_cutoff():
    torch.manual_seed(0)
    clips = torch.randn(16, RATE) * 0.1
    augment = only(colour_probability=1.0, band_limit_probability=1.0, cutoff_hz_range=(3000.0, 3000.0))
    out = augment(clips)
    kept = band_energy(out, 6000, 8000) / band_energy(clips, 6000, 8000)
    assert (kept < 1e-4).all()
    colour_only = only(colour_probability=1.0, band_limit_probability=0.0, colour_db=6.0)(clips)
    ratio = band_energy(colour_only, 200, 7800) / band_energy(clips, 200, 7800)
    assert (ratio > 10 ** (-12 / 10) / 4).all() and (ratio < 10 ** (12 / 10) * 4).all()  # a colour, not a cut


def test_reverb_adds_a_decaying_tail_after_the_sound_ends():
    torch.manual_seed(0)
    clips = torch.zeros(4, RATE)
    clips[:, 2000:4000] = torch.randn(4, 2000) * 0.3
    out = only(reverb_probability=1.0, rt60_range=(0.5, 0.5))(clips)
    tail = out[:, 4000:5600].pow(2).mean(1)
    later = out[:, 8000:9600].pow(2).mean(1)
    assert (tail > 1e-6).all() and (later < tail).all()
    assert out[:, :2000].abs().max() < 1e-5  # nothing before the sound (but FFT rounding): the room is causal


def test_codec_quantises_to_mu_law_levels():
    clips = tones(300, batch=2)
    out = only(codec_probability=1.0)(clips)
    assert torch.equal(clips, tones(300, batch=2))  # the input is left alone
    assert len(torch.unique(out[0])) <= 256 and 0 < (out - clips).abs().max() < 0.05


def test_probabilities_pick_about_that_share_of_clips():
    torch.manual_seed(0)
    clips = torch.randn(400, 4000) * 0.1
    changed = (VoiceAugment(speed_probability=0.0, colour_probability=0.5, reverb_probability=0.0,
                            codec_probability=0.0)(clips) != clips).any(1).float().mean()
    assert 0.4 < float(changed) < 0.6


def test_bad_probability_is_refused():
    with pytest.raises(ValueError, match="reverb_probability"):
        VoiceAugment(reverb_probability=1.5)


def test_centred_cuts_and_pads_about_the_centre():
    clips = torch.arange(10.0).unsqueeze(0)
    assert centred(clips, 6).tolist() == [[2.0, 3.0, 4.0, 5.0, 6.0, 7.0]]
    assert centred(clips[:, :4], 6).tolist() == [[0.0, 0.0, 1.0, 2.0, 3.0, 0.0]]
