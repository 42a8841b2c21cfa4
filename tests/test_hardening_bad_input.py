"""Every bad-input kind of tests/bad_audio.py through every audio reader: an error naming the file and the real cause
(or, with skip_bad_files, a skip listing that message); a clip longer than a 1 s reader is cut with a warning."""

from __future__ import annotations

import logging
import random
import re

import pytest

from lit_app.advsets.detection import DetectionClipDataset
from lit_app.advsets.external import ExternalDetectionDataModule
from lit_app.audio.io import AudioError, read_audio
from lit_app.cli import main
from lit_app.data import speech_commands as sc
from lit_app.data.kws import KWSDataModule
from lit_app.data.utterances import Utterance, audio_seconds, with_durations
from tests.bad_audio import HEADER_LEVEL, MESSAGES, good_clip, write_bad


def expect(kind, path):
    return f"{re.escape(path.name)}: .*{re.escape(MESSAGES[kind])}"


@pytest.mark.parametrize("kind", sorted(MESSAGES))
def test_read_audio_and_the_detection_dataset_name_the_real_cause(tmp_path, kind):
    path = write_bad(tmp_path, kind)
    with pytest.raises(AudioError, match=expect(kind, path)):
        read_audio(path)
    with pytest.raises(AudioError, match=expect(kind, path)):
        DetectionClipDataset([(path, 0)], cache=True)
    skipping = DetectionClipDataset([(path, 0), (good_clip(tmp_path / "ok.wav"), 1)], skip_bad_files=True)
    assert len(skipping) == 1 and MESSAGES[kind] in skipping.skipped[0]


@pytest.mark.parametrize("kind", HEADER_LEVEL)
def test_durations_from_headers_name_the_real_cause(tmp_path, kind):
    path = write_bad(tmp_path, kind)
    with pytest.raises(AudioError, match=expect(kind, path)):
        audio_seconds(path)
    kept, skipped = with_durations([Utterance("x", path, "HI")], skip_bad=True)
    assert not kept and MESSAGES[kind] in skipped[0]


def keyword_layout(root, kind):
    for speaker in ("a", "b", "c"):
        good_clip(root / "yes" / f"{speaker}_nohash_0.wav")
    bad = write_bad(root / "yes", kind, "d_nohash_0")
    (root / "validation_list.txt").write_text("yes/b_nohash_0.wav\n")
    (root / "testing_list.txt").write_text("yes/c_nohash_0.wav\n")
    return bad


@pytest.mark.parametrize("kind", sorted(set(MESSAGES) - {"missing"}))  # a missing file is not in a folder scan
def test_the_keyword_reader_names_the_real_cause(tmp_path, kind):
    bad = keyword_layout(tmp_path, kind)
    data = KWSDataModule(root=str(tmp_path), task="words35", augment=False)
    with pytest.raises(AudioError, match=expect(kind, bad)):
        data.setup("fit")
    skipping = KWSDataModule(root=str(tmp_path), task="words35", augment=False, skip_bad_files=True)
    skipping.setup("fit")
    assert len(skipping.datasets["train"]) == 1 and MESSAGES[kind] in skipping.skipped[0]


def test_the_keyword_reader_cuts_long_clips_with_a_warning(tmp_path, caplog):
    keyword_layout(tmp_path, "long")
    data = KWSDataModule(root=str(tmp_path), task="words35", augment=False)
    with caplog.at_level(logging.WARNING):
        data.setup("fit")
    assert len(data.datasets["train"]) == 2
    assert "1 clips are longer than 1 s" in caplog.text and "yes/d_nohash_0.wav (3.0 s)" in caplog.text


@pytest.mark.parametrize("kind", sorted(set(MESSAGES) - {"missing"}))
def test_the_external_folder_reader_names_the_real_cause(tmp_path, kind):
    for split in ("train", "val"):
        for name in ("a", "b", "c", "d"):
            good_clip(tmp_path / "set" / split / "normal" / f"{name}.wav", seed=1)
            good_clip(tmp_path / "set" / split / "adversarial" / f"{name}.wav", seed=2)
    bad = write_bad(tmp_path / "set" / "train" / "adversarial", kind, "e")
    data = ExternalDetectionDataModule(root=str(tmp_path / "set"))
    with pytest.raises(AudioError, match=expect(kind, bad)):
        data.setup("fit")
    skipping = ExternalDetectionDataModule(root=str(tmp_path / "set"), skip_bad_files=True)
    skipping.setup("fit")
    assert len(skipping.datasets["train"]) == 8 and MESSAGES[kind] in skipping.datasets["train"].skipped[0]


def test_bad_audio_under_lit_app_ends_with_one_line(tmp_path, capsys, monkeypatch):
    bad = keyword_layout(tmp_path / "data", "truncated")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as stop:
        main(["fit", "--model", "KWSModule", "--data", "KWSDataModule", f"--data.root={tmp_path / 'data'}",
              "--data.task=words35", "--trainer.fast_dev_run=1", "--trainer.accelerator=cpu", "--trainer.logger=false"])
    assert stop.value.code == 1
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"lit-app: error: {bad}: truncated WAV"), lines
    monkeypatch.setenv("LIT_APP_DEBUG", "1")
    with pytest.raises(AudioError):
        main(["fit", "--model", "KWSModule", "--data", "KWSDataModule", f"--data.root={tmp_path / 'data'}",
              "--data.task=words35", "--trainer.fast_dev_run=1", "--trainer.accelerator=cpu", "--trainer.logger=false"])


def test_words35_names_the_folders_it_leaves_out(tmp_path, caplog):
    keyword_layout(tmp_path, "long")
    good_clip(tmp_path / "yess" / "a_nohash_1.wav")
    with caplog.at_level(logging.WARNING):
        sc.select_for_task(sc.scan(tmp_path)["train"], "words35", 10.0, random.Random(0))
    assert "left out 1 clips of other folders (yess: 1)" in caplog.text


def test_the_corpus_manifest_refuses_a_cut_short_clip_and_a_file_shared_by_two_rows(tmp_path):
    from lit_app.advsets import manifest
    from tests.test_adversarial_corpus import valid_row

    good_clip(tmp_path / "clean" / "ok.wav", seconds=100 / 16000)
    manifest.write_manifest(tmp_path, [valid_row("clean/ok.wav"), {**valid_row("clean/ok.wav"), "id": "other"}])
    with pytest.raises(manifest.ManifestError, match=r"line 3 .*clean/ok\.wav is also the clip of line 2"):
        manifest.read_manifest(tmp_path)
    write_bad(tmp_path / "clean", "truncated", "cut")
    manifest.write_manifest(tmp_path, [valid_row("clean/cut.wav")])
    with pytest.raises(manifest.ManifestError, match=r"line 2 .*cut\.wav: truncated WAV"):
        manifest.read_manifest(tmp_path)
