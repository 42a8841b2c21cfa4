"""Cepstral feature families: shapes, frame counts, filter banks and agreement with torchaudio."""

import pytest
import torch
import torchaudio.functional as AF
import torchaudio.transforms as T

from lit_app.audio.cepstral import (
    FEATURE_KINDS,
    CepstralFeatures,
    filter_bank,
    gammatone_fbanks,
    pre_emphasis,
)

# The papers' two frame settings: 32 ms / 16 ms with 20 coefficients, 25 ms / 10 ms with 40.
PRESETS = {"block": dict(win_ms=32.0, hop_ms=16.0, n_coefficients=20), "utterance": dict(win_ms=25.0, hop_ms=10.0, n_coefficients=40)}


@pytest.mark.parametrize("kind", FEATURE_KINDS)
@pytest.mark.parametrize("preset", PRESETS)
def test_shapes_and_frame_counts(kind, preset):
    front_end = CepstralFeatures(kind, **PRESETS[preset])
    out = front_end(torch.randn(3, 8192) * 0.1)
    expected_features = 257 if kind == "logspec" else PRESETS[preset]["n_coefficients"]
    # 512 ms block: 31 frames at 32/16 (the follow-up's 31x20 input), 49 at 25/10, no centring.
    expected_frames = {"block": 31, "utterance": 49}[preset]
    assert out.shape == (3, expected_features, expected_frames)
    assert front_end.num_frames(8192) == expected_frames
    assert front_end.num_frames(torch.tensor([8192, 100])).tolist() == [expected_frames, 1]
    assert torch.isfinite(out).all()


def test_lfcc_matches_torchaudio_lfcc():
    wave = torch.randn(2, 12000) * 0.1
    ours = CepstralFeatures("lfcc", n_coefficients=20, n_filters=40, win_ms=25, hop_ms=10, pre_emphasis=0.0)
    reference = T.LFCC(16000, n_filter=40, n_lfcc=20, log_lf=True, speckwargs=dict(
        n_fft=512, win_length=400, hop_length=160, window_fn=torch.hamming_window, center=False, power=2.0))
    assert torch.allclose(ours(wave), reference(wave), atol=1e-5)


def test_mfcc_matches_torchaudio_pipeline_with_pre_emphasis():
    wave = torch.randn(2, 12000) * 0.1
    ours = CepstralFeatures("mfcc", n_coefficients=13, n_filters=40, win_ms=32, hop_ms=16)
    emphasised = torch.cat([wave[:, :1], wave[:, 1:] - 0.97 * wave[:, :-1]], dim=1)
    reference = T.MFCC(16000, n_mfcc=13, log_mels=True, melkwargs=dict(
        n_fft=512, win_length=512, hop_length=256, n_mels=40, f_min=0.0, window_fn=torch.hamming_window,
        center=False, power=2.0, mel_scale="htk"))
    assert torch.allclose(ours(wave), reference(emphasised), atol=1e-4)


def test_pre_emphasis_values():
    assert torch.allclose(pre_emphasis(torch.tensor([1.0, 1.0, 0.0, 2.0]), 0.97), torch.tensor([1.0, 0.03, -0.97, 2.0]))


def test_imfcc_bank_over_the_full_band_is_the_flipped_mel_bank():
    mel = AF.melscale_fbanks(257, 0.0, 8000.0, 40, 16000, norm=None, mel_scale="htk")
    inverse = filter_bank("imfcc", 257, 40, 16000, 0.0, 8000.0)
    assert torch.allclose(inverse, mel.flip(0).flip(1), atol=1e-5)
    assert torch.equal(CepstralFeatures("imfcc", n_filters=40).bank, inverse)
    # Mel filters are narrow at low frequencies; inverted ones are narrow at high frequencies.
    width = (inverse > 0).sum(0)
    assert width[-1] < width[0] and (mel > 0).sum(0)[0] < (mel > 0).sum(0)[-1]


def test_gammatone_bank_peaks_on_erb_spaced_centres_and_widens():
    bank = gammatone_fbanks(257, 50.0, 8000.0, 32, 16000)
    freqs = torch.linspace(0, 8000, 257)
    peaks = freqs[bank.argmax(0)]
    assert torch.all(peaks[1:] > peaks[:-1]) and abs(float(peaks[0]) - 50.0) < 32 and abs(float(peaks[-1]) - 8000.0) < 32
    # Filters wider than a few FFT bins are sampled near their peak of 1 (low ones fall between bins).
    assert torch.allclose(bank.max(0).values[16:], torch.ones(16), atol=0.02)
    half_power = (bank**2 >= 0.5).sum(0)
    assert half_power[-1] > 3 * half_power[len(half_power) // 2] / 2
    full_band = gammatone_fbanks(257, 0.0, 8000.0, 32, 16000)
    assert torch.allclose(filter_bank("igfcc", 257, 32, 16000, 0.0, 8000.0), full_band.flip(0).flip(1), atol=1e-6)


@pytest.mark.parametrize(("direct", "inverse"), [("mfcc", "imfcc"), ("gfcc", "igfcc")])
def test_inverse_banks_mirror_about_the_band_they_cover(direct, inverse):
    """With 300-6000 Hz the inverse bank must cover 300-6000 Hz too (mirrored about 3150 Hz, not about 4 kHz)."""
    f_min, f_max = 300.0, 6000.0
    freqs = torch.linspace(0, 8000, 257)
    forward = filter_bank(direct, 257, 30, 16000, f_min, f_max)
    mirrored = filter_bank(inverse, 257, 30, 16000, f_min, f_max)
    peaks, mirrored_peaks = freqs[forward.argmax(0)], freqs[mirrored.argmax(0)]
    spacing = float(freqs[1])
    assert torch.all(mirrored_peaks[1:] > mirrored_peaks[:-1])
    assert f_min - spacing <= float(mirrored_peaks.min()) and float(mirrored_peaks.max()) <= f_max + spacing
    # Each inverse filter peaks where its direct counterpart's mirror image about the band's centre does.
    assert torch.allclose(mirrored_peaks, (f_min + f_max - peaks).flip(0), atol=spacing)
    # The widths mirror too (narrow filters at the top of the band): each filter's weight over the band's bins is
    # its counterpart's, within half a bin (the bins fall at other points of the mirrored shapes).
    band = (freqs >= f_min) & (freqs <= f_max)
    width, mirrored_width = forward[band].sum(0), mirrored[band].sum(0)
    assert mirrored_width[-1] < mirrored_width[0] / 3 and torch.allclose(mirrored_width, width.flip(0), atol=0.5)
    if direct == "mfcc":  # triangles end at the band's edges: nothing outside it counts
        outside = (freqs < f_min) | (freqs > f_max)
        assert mirrored[outside].abs().max() == 0 and mirrored[~outside].sum(1).gt(0).sum() > 150


def test_filter_band_is_checked():
    with pytest.raises(ValueError, match="f_min < f_max"):
        filter_bank("imfcc", 257, 40, 16000, 5000.0, 3000.0)


@pytest.mark.parametrize("kind", FEATURE_KINDS)
def test_differentiable_and_finite_on_silence(kind):
    front_end = CepstralFeatures(kind, n_coefficients=20, win_ms=32, hop_ms=16)
    wave = (torch.randn(1, 4000) * 0.05).requires_grad_()
    front_end(wave).sum().backward()
    assert wave.grad is not None and torch.isfinite(wave.grad).all() and wave.grad.abs().sum() > 0
    assert torch.isfinite(front_end(torch.zeros(1, 4000))).all()


def test_settings_are_checked():
    with pytest.raises(ValueError, match="cannot exceed"):
        CepstralFeatures("mfcc", n_coefficients=41, n_filters=40)
    with pytest.raises(ValueError, match="unknown feature"):
        CepstralFeatures("cqcc")
    with pytest.raises(ValueError, match="longer than n_fft"):
        CepstralFeatures("mfcc", win_ms=40.0)
