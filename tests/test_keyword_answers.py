"""A keyword victim's answers on a corpus: keyword clips only, each with its voice; the mean over keywords."""

import numpy as np
import pytest
import soundfile as sf
import torch

from lit_app.experiments.keyword_answers import in_batches, keyword_clips, mean_keyword_accuracy

LABELS = ["_silence_", "_unknown_", "yes", "no"]


def speech_commands(root, manifest=False):
    for word, speaker in (("yes", "a"), ("no", "b"), ("yes", "c"), ("house", "d")):
        (root / word).mkdir(parents=True, exist_ok=True)
        sf.write(root / word / f"{speaker}_nohash_0.wav", np.full(16000, 0.1, dtype=np.float32), 16000)
    (root / "validation_list.txt").write_text("")
    (root / "testing_list.txt").write_text("yes/a_nohash_0.wav\nno/b_nohash_0.wav\nhouse/d_nohash_0.wav\n")
    if manifest:
        (root / "manifest.csv").write_text("path,voice\nyes/a_nohash_0.wav,flite:slt\nno/b_nohash_0.wav,espeak:en+m3\n")
    return root


@pytest.mark.parametrize(("manifest", "voices"), [(False, ["a", "b"]), (True, ["flite:slt", "espeak:en+m3"])])
def test_keyword_clips_of_a_split_with_their_voices(tmp_path, manifest, voices):
    data = keyword_clips(speech_commands(tmp_path, manifest), LABELS, "testing")
    assert sorted(zip([c.word for c in data.clips], data.voices)) == sorted(zip(["yes", "no"], voices))
    assert data.waveforms.shape == (2, 16000) and data.waveforms.abs().max() == pytest.approx(0.1, abs=1e-3)
    assert sorted(data.target.tolist()) == [2, 3] and data.skipped == []
    with pytest.raises(ValueError, match="no keyword clips in its validation split"):
        keyword_clips(tmp_path, LABELS, "validation")


def test_the_mean_is_over_the_keywords_present_and_batches_are_joined():
    answer, target = torch.tensor([2, 2, 3, 1]), torch.tensor([2, 2, 2, 3])
    assert mean_keyword_accuracy(answer, target, len(LABELS)) == pytest.approx((2 / 3 + 0) / 2)
    waves = torch.arange(10.0).reshape(5, 2)
    assert torch.equal(in_batches(lambda batch: batch.sum(1), waves, batch_size=2), waves.sum(1))
