import numpy as np
import pytest
import soundfile as sf
import torch

from lit_app.audio.io import AudioError
from lit_app.data import speech_commands as sc
from lit_app.data.kws import KWSDataModule
from lit_app.data.vocab import SILENCE, UNKNOWN, task_labels


def write(path, samples, rate=16000, subtype="PCM_16"):
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), samples, rate, subtype=subtype)


@pytest.fixture
def real_layout(tmp_path):
    """A miniature copy of the real Speech Commands layout, with one short clip and a 44.1 kHz clip."""
    rng = np.random.default_rng(0)
    for word in ("yes", "no", "marvin", "bed"):
        for speaker in ("0a7c2a8d", "0b09edd3", "0c40e715"):
            write(tmp_path / word / f"{speaker}_nohash_0.wav", (rng.standard_normal(16000) * 3000).astype(np.int16))
    write(tmp_path / "yes" / "0d2bcf9d_nohash_0.wav", np.ones(9000, dtype=np.int16) * 100)
    write(tmp_path / "no" / "0d2bcf9d_nohash_0.wav", (rng.standard_normal(44100) * 0.1).astype(np.float32), 44100)
    write(tmp_path / "_background_noise_" / "white_noise.wav", (rng.standard_normal(48000) * 0.2).astype(np.float32))
    (tmp_path / "validation_list.txt").write_text("yes/0b09edd3_nohash_0.wav\nno/0b09edd3_nohash_0.wav\n")
    (tmp_path / "testing_list.txt").write_text("yes/0c40e715_nohash_0.wav\nno/0c40e715_nohash_0.wav\nmarvin/0c40e715_nohash_0.wav\n")
    return tmp_path


def test_scan_splits_by_lists(real_layout):
    splits = sc.scan(real_layout)
    assert {c.path for c in splits["testing"]} == {
        "yes/0c40e715_nohash_0.wav", "no/0c40e715_nohash_0.wav", "marvin/0c40e715_nohash_0.wav"}
    assert len(splits["train"]) == 14 - 5
    assert not {c.path for c in splits["train"]} & {c.path for c in splits["testing"] + splits["validation"]}
    assert splits["testing"][0].speaker == "0c40e715"


def test_scan_errors_name_the_problem(tmp_path):
    with pytest.raises(FileNotFoundError, match="no such folder"):
        sc.scan(tmp_path / "missing")
    with pytest.raises(FileNotFoundError, match="validation_list.txt: missing"):
        sc.scan(tmp_path)


def test_task_selection_maps_unknown_words():
    clips = [sc.Clip(f"{w}/a_nohash_{i}.wav", w) for w in ("yes", "no", "marvin", "bed") for i in range(10)]
    import random

    chosen = sc.select_for_task(clips, "keywords12", unknown_percentage=50, rng=random.Random(0))
    labels = task_labels("keywords12")
    assert sum(1 for _, y in chosen if labels[y] == UNKNOWN) == 10  # 50% of the 20 keyword clips
    words = sc.select_for_task(clips, "words35", 0, random.Random(0))
    assert len(words) == 40 and {task_labels("words35")[y] for _, y in words} == {"yes", "no", "marvin", "bed"}


def test_datamodule_pads_resamples_and_adds_silence(real_layout):
    dm = KWSDataModule(root=str(real_layout), batch_size=4, unknown_percentage=100, silence_percentage=50)
    dm.setup("fit")
    audio, target = dm.datasets["train"].tensors
    assert audio.dtype == torch.int16 and audio.shape[1] == 16000
    assert SILENCE in [dm.labels[t] for t in target.tolist()]
    short = dm.paths["train"].index("yes/0d2bcf9d_nohash_0.wav")
    assert audio[short, 9000:].abs().max() == 0 and audio[short, :9000].abs().min() > 0
    batch = dm.on_after_batch_transfer(next(iter(dm.train_dataloader())), 0)
    assert batch[0].dtype == torch.float32 and batch[0].abs().max() <= 1.0


@pytest.mark.parametrize("kind", ["corrupt", "empty", "nan"])
def test_bad_clip_is_named_or_skipped(real_layout, kind):
    bad = real_layout / "yes" / "0a7c2a8d_nohash_0.wav"
    if kind == "corrupt":
        bad.write_bytes(b"not audio at all")
    elif kind == "empty":
        write(bad, np.zeros(0, dtype=np.int16))
    else:
        write(bad, np.full(16000, np.nan, dtype=np.float32), subtype="FLOAT")
    with pytest.raises(AudioError, match="yes/0a7c2a8d_nohash_0.wav"):
        KWSDataModule(root=str(real_layout)).setup("fit")
    dm = KWSDataModule(root=str(real_layout), skip_bad_files=True)
    dm.setup("fit")
    assert len(dm.skipped) == 1 and "0a7c2a8d_nohash_0.wav" in dm.skipped[0]
    assert "yes/0a7c2a8d_nohash_0.wav" not in dm.paths["train"]
