import torch
import torchaudio.transforms as T

from lit_app.audio.augment import TimeShiftAndNoise
from lit_app.audio.features import MFCC, LogMelSpectrogram


def test_mfcc_shape_and_frame_count():
    mfcc = MFCC(n_mfcc=40, win_ms=30, hop_ms=10)
    out = mfcc(torch.randn(3, 16000))
    assert out.shape == (3, 40, 101)
    assert mfcc.num_frames(16000) == 101


def test_mfcc_matches_torchaudio_log_mel_mfcc():
    wave = torch.randn(2, 16000) * 0.1
    ours = MFCC(n_mfcc=13, n_mels=40, win_ms=30, hop_ms=10, f_min=20.0)
    reference = T.MFCC(
        sample_rate=16000, n_mfcc=13, log_mels=True,
        melkwargs={"n_fft": 512, "win_length": 480, "hop_length": 160, "n_mels": 40, "f_min": 20.0},
    )
    assert torch.allclose(ours(wave), reference(wave), atol=1e-4)


def test_features_are_differentiable_to_the_waveform():
    wave = (torch.randn(1, 8000) * 0.1).requires_grad_()
    for front_end in (MFCC(), LogMelSpectrogram()):
        front_end(wave).sum().backward()
        assert wave.grad is not None and torch.isfinite(wave.grad).all() and wave.grad.abs().sum() > 0
        wave.grad = None


def test_features_finite_on_digital_silence():
    assert torch.isfinite(MFCC()(torch.zeros(1, 16000))).all()


def test_augment_shifts_within_bounds_and_adds_noise_at_snr():
    torch.manual_seed(0)
    augment = TimeShiftAndNoise(max_shift=0, noise_probability=1.0, snr_db_range=(10.0, 10.0))
    clips = torch.zeros(4, 1000)
    clips[:, 500] = 1.0
    shifted = TimeShiftAndNoise(max_shift=100, noise_probability=0.0)(clips)
    peaks = shifted.argmax(1)
    assert ((peaks - 500).abs() <= 100).all() and shifted.sum(1).eq(1).all()
    augment.set_noise([torch.randn(5000) * 0.1])
    speech = torch.randn(4, 1000) * 0.3
    noisy = augment(speech)
    snr = 10 * torch.log10(speech.pow(2).mean(1) / (noisy - speech).pow(2).mean(1))
    assert ((snr > 8.5) & (snr < 11.5)).all(), snr
