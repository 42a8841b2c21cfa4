"""The LPC vocoder keeps a clip's spectral envelope and gives it the pitch it draws."""

import math

import pytest
import torch
import torchaudio.functional as AF

from lit_app.audio.lpc_vocoder import LPCVocoder, levinson_durbin
from lit_app.audio.voice_augment import VoiceAugment

RATE = 16000


def vowel(pitch_hz: float, formant_hz: float = 700.0, batch: int = 4) -> torch.Tensor:
    """An impulse train at ``pitch_hz`` through one resonance at ``formant_hz``: a crude sustained vowel."""
    pulses = torch.zeros(batch, RATE)
    pulses[:, :: int(RATE / pitch_hz)] = 1.0
    radius, angle = 0.97, 2 * math.pi * formant_hz / RATE
    a = torch.tensor([1.0, -2 * radius * math.cos(angle), radius**2])
    out = AF.lfilter(pulses, a, torch.tensor([1.0, 0.0, 0.0]), clamp=False)
    return 0.5 * out / out.abs().amax(1, keepdim=True)


def autocorrelation_peak_hz(clips: torch.Tensor) -> torch.Tensor:
    middle = clips[:, 4000:12000]
    spectrum = torch.fft.rfft(middle, n=2 * middle.shape[1])
    ac = torch.fft.irfft(spectrum.abs() ** 2)[:, : RATE // 50]
    low = RATE // 400
    return RATE / (ac[:, low:].argmax(1) + low).float()


def band_energy(clips: torch.Tensor, low: float, high: float) -> torch.Tensor:
    spectrum = torch.fft.rfft(clips).abs().pow(2)
    frequency = torch.fft.rfftfreq(clips.shape[1], 1 / RATE)
    return spectrum[:, (frequency >= low) & (frequency < high)].sum(1)


def test_levinson_durbin_recovers_an_autoregressive_process():
    torch.manual_seed(0)
    coefficients = torch.tensor([1.0, -1.2, 0.6])
    process = AF.lfilter(torch.randn(1, 200_000, dtype=torch.float64), coefficients.double(),
                         torch.tensor([1.0, 0.0, 0.0], dtype=torch.float64), clamp=False)[0]
    r = torch.stack([(process[: process.numel() - k] * process[k:]).mean() for k in range(3)])[None]
    a, error = levinson_durbin(r, 2)
    assert torch.allclose(a[0].float(), coefficients, atol=0.02)
    assert error.item() == pytest.approx(1.0, rel=0.05)  # the driving noise's power


def test_the_vocoder_gives_the_new_pitch_and_keeps_the_formant_length_and_peak():
    torch.manual_seed(0)
    clips = vowel(120.0)
    out = LPCVocoder(f0_range_hz=(200.0, 200.0), f0_slope_range=(0.0, 0.0))(clips)
    assert out.shape == clips.shape and torch.isfinite(out).all()
    assert torch.allclose(out.abs().amax(1), clips.abs().amax(1), atol=1e-6)
    assert torch.allclose(autocorrelation_peak_hz(clips), torch.tensor(120.0), rtol=0.03)
    assert torch.allclose(autocorrelation_peak_hz(out), torch.tensor(200.0), rtol=0.03)
    assert (band_energy(out, 500, 900) > 10 * band_energy(out, 2500, 2900)).all()  # the resonance stays


def test_the_formant_vocoder_keeps_the_lowest_resonances_and_drops_the_rest():
    torch.manual_seed(0)
    clips = vowel(120.0, formant_hz=2000.0) + vowel(120.0, formant_hz=600.0)
    settings = dict(f0_range_hz=(200.0, 200.0), f0_slope_range=(0.0, 0.0))
    whole, one = LPCVocoder(**settings)(clips), LPCVocoder(**settings, formants=1)(clips)
    assert torch.isfinite(one).all() and torch.allclose(one.abs().amax(1), clips.abs().amax(1), atol=1e-6)
    assert torch.allclose(autocorrelation_peak_hz(one), torch.tensor(200.0), rtol=0.03)
    share = lambda out: band_energy(out, 1800, 2200) / band_energy(out, 400, 800)  # noqa: E731
    # The whole envelope keeps the second resonance; one formant keeps only the lowest, 600 Hz.
    assert (share(whole) > 0.1).all() and (share(one) < 0.2 * share(whole)).all()
    with pytest.raises(ValueError, match="formants must be between 0 and 5"):
        LPCVocoder(formants=6)


def test_the_formant_scale_moves_the_kept_formants():
    torch.manual_seed(0)
    clips = vowel(120.0, formant_hz=600.0)
    settings = dict(f0_range_hz=(200.0, 200.0), f0_slope_range=(0.0, 0.0), formants=1)
    plain, longer = LPCVocoder(**settings)(clips), LPCVocoder(**settings, formant_scale_range=(1.5, 1.5))(clips)
    assert torch.isfinite(longer).all() and torch.allclose(longer.abs().amax(1), clips.abs().amax(1), atol=1e-6)
    moved = lambda out: band_energy(out, 800, 1000) / band_energy(out, 500, 700)  # noqa: E731
    assert (moved(plain) < 1.0).all() and (moved(longer) > 2.0).all()
    with pytest.raises(ValueError, match="set formants too"):
        LPCVocoder(formant_scale_range=[0.9, 1.1])


def test_the_vowel_scale_moves_the_first_two_formants_and_leaves_the_third():
    torch.manual_seed(0)
    clips = (vowel(120.0, formant_hz=500.0) + vowel(120.0, formant_hz=1500.0) + vowel(120.0, formant_hz=2500.0)) / 2
    settings = dict(f0_range_hz=(200.0, 200.0), f0_slope_range=(0.0, 0.0), formants=3)
    plain, moved = LPCVocoder(**settings)(clips), LPCVocoder(**settings, vowel_scale_range=(1.3, 1.3))(clips)
    assert torch.isfinite(moved).all() and torch.allclose(moved.abs().amax(1), clips.abs().amax(1), atol=1e-6)
    for out, first, second in ((plain, 1.0, 1.0), (moved, 1.3, 1.3)):
        bands = [band_energy(out, hz - 100, hz + 100) for hz in (500 * first, 1500 * second, 2500)]
        elsewhere = [band_energy(out, hz - 100, hz + 100) for hz in (500 * 2.3 - 500 * first, 1500 * 2.3 - 1500 * second)]
        assert all((band > 2 * other).all() for band, other in zip(bands, elsewhere))
    assert (band_energy(moved, 2400, 2600) > 0.3 * band_energy(plain, 2400, 2600)).all()  # F3 stays where it was
    with pytest.raises(ValueError, match="formants to 2 or more"):
        LPCVocoder(formants=1, vowel_scale_range=(0.9, 1.1))


def test_drawn_vowel_factors_are_independent_per_clip_and_leave_the_formant_scale_stream_alone():
    vocoder = LPCVocoder(formants=3, formant_scale_range=(0.9, 1.1), vowel_scale_range=(0.8, 1.25))
    torch.manual_seed(0)
    factors = vocoder.formant_factors(1000, torch.zeros(1))
    torch.manual_seed(0)
    common = LPCVocoder(formants=3, formant_scale_range=(0.9, 1.1)).formant_factors(1000, torch.zeros(1))
    assert torch.equal(factors[:, 2], common[:, 2])  # F3 keeps the clip's one factor, drawn first as before
    vowel_factors = factors[:, :2] / common[:, :2]
    assert vowel_factors.min() >= 0.8 and vowel_factors.max() <= 1.25
    assert abs(torch.corrcoef(vowel_factors.T)[0, 1]) < 0.1


def test_silence_stays_silent_and_noise_stays_noise():
    torch.manual_seed(0)
    vocoder = LPCVocoder()
    assert torch.equal(vocoder(torch.zeros(2, RATE)), torch.zeros(2, RATE))
    assert torch.equal(LPCVocoder(formants=3)(torch.zeros(2, RATE)), torch.zeros(2, RATE))
    noise = torch.randn(2, RATE) * 0.1
    out = vocoder(noise)
    assert torch.isfinite(out).all()
    # Unvoiced frames are driven by noise, so no pitch appears: the output stays about as flat as the input.
    assert (band_energy(out, 4000, 8000) / band_energy(out, 0, 4000) > 0.3).all()


def test_voice_augment_uses_the_vocoder_only_when_asked():
    torch.manual_seed(0)
    clips = vowel(120.0, batch=8)
    settings = dict(speed_probability=0.0, colour_probability=0.0, reverb_probability=0.0, codec_probability=0.0)
    assert torch.equal(VoiceAugment(**settings)(clips), clips)
    out = VoiceAugment(**settings, vocoder_probability=1.0, vocoder_f0_range_hz=(200.0, 200.0))(clips)
    pitch = autocorrelation_peak_hz(out)  # a base of 200 Hz falling or rising a little over the clip
    assert ((pitch - 120.0).abs() > 20.0).all() and ((pitch > 150.0) & (pitch < 420.0)).all()


@pytest.mark.parametrize("settings", [dict(order=0), dict(f0_range_hz=(300.0, 100.0)), dict(frame_ms=0.5),
                                      dict(formants=5, formant_scale_range=(1.2, 0.9)),
                                      dict(formants=5, vowel_scale_range=(0.4, 1.0))])
def test_bad_settings_are_refused(settings):
    with pytest.raises(ValueError):
        LPCVocoder(**settings)
