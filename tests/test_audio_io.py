import numpy as np
import pytest
import soundfile as sf
import torch

from lit_app.audio.io import STRICT, AudioError, AudioPolicy, read_audio, write_wav
from lit_app.audio.pcm import to_pcm16


def tone(seconds=0.5, rate=16000, channels=1):
    t = np.arange(int(seconds * rate)) / rate
    wave = 0.5 * np.sin(2 * np.pi * 440 * t).astype(np.float32)
    return np.stack([wave] * channels, axis=1) if channels > 1 else wave


def test_round_trip_is_16_bit_pcm(tmp_path):
    path = tmp_path / "a.wav"
    write_wav(path, torch.from_numpy(tone()))
    info = sf.info(str(path))
    assert (info.samplerate, info.channels, info.subtype) == (16000, 1, "PCM_16")
    wave = read_audio(path)
    assert wave.dtype == torch.float32 and wave.shape == (8000,)
    assert torch.allclose(wave, torch.from_numpy(tone()), atol=1 / 32768)
    assert not list(tmp_path.glob(".*.part")), "atomic write leaves no temporary file"


def test_pcm16_rounding_saturates():
    assert to_pcm16(np.array([1.5, -1.5, 0.0], dtype=np.float32)).tolist() == [32767, -32768, 0]


def test_missing_file_names_it(tmp_path):
    with pytest.raises(AudioError, match="nope.wav: no such audio file"):
        read_audio(tmp_path / "nope.wav")


def test_corrupt_file_names_it(tmp_path):
    path = tmp_path / "corrupt.wav"
    path.write_bytes(b"RIFF\x00\x00garbage" * 10)
    with pytest.raises(AudioError, match=r"corrupt.wav: unreadable audio"):
        read_audio(path)


def test_empty_file_names_it(tmp_path):
    path = tmp_path / "empty.wav"
    sf.write(str(path), np.zeros(0, dtype=np.int16), 16000, subtype="PCM_16")
    with pytest.raises(AudioError, match="empty.wav: empty audio"):
        read_audio(path)


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_non_finite_samples_name_the_file(tmp_path, bad):
    wave = tone()
    wave[100] = bad
    path = tmp_path / "nan.wav"
    sf.write(str(path), wave, 16000, subtype="FLOAT")
    with pytest.raises(AudioError, match="nan.wav: audio holds NaN or Inf"):
        read_audio(path)


def test_clipping_beyond_full_scale(tmp_path):
    path = tmp_path / "loud.wav"
    sf.write(str(path), tone() * 3, 16000, subtype="FLOAT")
    with pytest.raises(AudioError, match="loud.wav: samples reach 1.5"):
        read_audio(path)
    assert read_audio(path, AudioPolicy(allow_clipping=True)).abs().max() > 1.4


def test_stereo_is_downmixed_or_refused(tmp_path):
    path = tmp_path / "stereo.wav"
    sf.write(str(path), tone(channels=2), 16000, subtype="PCM_16")
    assert read_audio(path).shape == (8000,)
    with pytest.raises(AudioError, match="stereo.wav: 2 channels, expected mono"):
        read_audio(path, STRICT)


def test_wrong_rate_is_resampled_or_refused(tmp_path):
    path = tmp_path / "cd.wav"
    sf.write(str(path), tone(rate=44100), 44100, subtype="PCM_16")
    assert read_audio(path).shape == (8000,)
    with pytest.raises(AudioError, match="cd.wav: sample rate 44100 Hz, expected 16000 Hz"):
        read_audio(path, STRICT)


def test_write_refuses_empty(tmp_path):
    with pytest.raises(AudioError):
        write_wav(tmp_path / "x.wav", np.zeros(0, dtype=np.float32))
