"""One int16 scale on every path: a clip reads as the same floats through each reader of the app."""

from __future__ import annotations

import numpy as np
import soundfile as sf
import torch

from lit_app.advsets.detection import DetectionClipDataset
from lit_app.audio.io import STRICT, AudioPolicy, write_wav
from lit_app.audio.pcm import float_to_pcm16, pcm16_to_float, quantize, to_pcm16
from lit_app.data import speech_commands as sc
from lit_app.data.asr import UtteranceDataset
from lit_app.data.kws import KWSDataModule
from lit_app.data.utterances import Utterance
from lit_app.text import Alphabet

# The extremes of the int16 range and values whose float forms differ between the scales 32767 and 32768.
SAMPLES = np.array([-32768, -32767, -16384, -1, 0, 1, 12345, 16384, 32766, 32767] * 1600, dtype=np.int16)


def test_every_reader_gives_k_over_32768(tmp_path):
    path = tmp_path / "yes" / "speaker_nohash_0.wav"
    path.parent.mkdir()
    sf.write(path, SAMPLES, 16000, subtype="PCM_16")
    expected = torch.from_numpy(SAMPLES.astype(np.float32) / 32768.0)

    int16, kept, _ = sc.load_clips(tmp_path, [sc.Clip("yes/speaker_nohash_0.wav", "yes")], AudioPolicy(), skip_bad=False)
    assert kept == [0] and torch.equal(int16[0], torch.from_numpy(SAMPLES))  # stored without a rounding step
    keyword = KWSDataModule(root=str(tmp_path), augment=False).waveforms(int16, augment=False)[0]
    cached = DetectionClipDataset([(path, 1)], cache=True)[0][0]
    streamed = DetectionClipDataset([(path, 1)], cache=False)[0][0]
    speech = UtteranceDataset([Utterance("u", path, "yes")], Alphabet(), STRICT)[0][0]
    for name, wave in {"keyword": keyword, "detection cached": cached, "detection streamed": streamed,
                       "speech": speech}.items():
        assert torch.equal(wave, expected), name


def test_written_clips_read_back_bit_for_bit(tmp_path):
    wave = pcm16_to_float(SAMPLES)
    write_wav(tmp_path / "x.wav", wave)
    assert np.array_equal(sf.read(tmp_path / "x.wav", dtype="int16")[0], SAMPLES)
    assert np.array_equal(to_pcm16(wave), SAMPLES) and torch.equal(float_to_pcm16(wave), torch.from_numpy(SAMPLES))
    assert torch.equal(quantize(wave), wave)


def test_out_of_range_floats_clip_to_the_int16_range():
    over = torch.tensor([1.0, 1.5, -1.0, -1.5, 0.49 / 32768])
    assert float_to_pcm16(over).tolist() == [32767, 32767, -32768, -32768, 0]
    assert to_pcm16(over).tolist() == [32767, 32767, -32768, -32768, 0]
