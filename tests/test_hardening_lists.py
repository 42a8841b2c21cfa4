"""Lists of clips (detection CSVs, Common Voice TSVs, Speech Commands lists, LibriSpeech transcripts) stay inside
their folder, and name each file once, under one label, in one split; errors name the rows."""

from __future__ import annotations

import re

import pytest

from lit_app.advsets.external import DatasetLayoutError, ExternalDetectionDataModule, read_layout
from lit_app.data import commonvoice, librispeech
from lit_app.data import speech_commands as sc
from lit_app.paths import ListedPathError
from tests.asr_helpers import make_commonvoice, make_librispeech
from tests.bad_audio import good_clip


def detection_csv(folder, rows):
    folder.mkdir(parents=True, exist_ok=True)
    for name in ("a", "b", "c"):
        good_clip(folder / "clips" / f"{name}.wav")
    csv = folder / "list.csv"
    csv.write_text("path,label,split\n" + "".join(f"{row}\n" for row in rows))
    return csv


@pytest.mark.parametrize("entry", ["../../../../etc/passwd", "/etc/passwd", "../secret.wav", "../missing.wav",
                                   "clips/../../secret.wav"])
def test_a_detection_csv_row_outside_its_folder_is_refused_alike_whether_or_not_the_file_exists(tmp_path, entry):
    good_clip(tmp_path / "secret.wav")  # exists, outside the dataset folder
    csv = detection_csv(tmp_path / "set", ["clips/a.wav,normal,train", f"{entry},adversarial,train"])
    with pytest.raises(ListedPathError, match=rf"list\.csv:3: {re.escape(repr(entry))} lies outside .*; refused") as err:
        read_layout(csv)
    assert "no such" not in str(err.value) and "unreadable" not in str(err.value)


def test_a_base_folder_named_by_the_user_admits_files_in_it(tmp_path):
    good_clip(tmp_path / "shared" / "x.wav")
    csv = detection_csv(tmp_path / "shared" / "lists", ["clips/a.wav,normal,train", "../x.wav,adversarial,train"])
    with pytest.raises(ListedPathError):
        read_layout(csv)
    clips = read_layout(csv, base_dir=tmp_path / "shared")
    assert [c.path.name for c in clips] == ["a.wav", "x.wav"]
    module = ExternalDetectionDataModule(root=str(csv), base_dir=str(tmp_path / "shared"))
    assert len(module.split_clips()["train"]) == 2


def test_a_link_in_a_class_folder_to_a_file_outside_is_refused(tmp_path):
    good_clip(tmp_path / "outside.wav")
    for label in ("normal", "adversarial"):
        good_clip(tmp_path / "set" / label / "a.wav")
    (tmp_path / "set" / "adversarial" / "b.wav").symlink_to(tmp_path / "outside.wav")
    with pytest.raises(ListedPathError, match=r"adversarial/b\.wav: .* lies outside"):
        read_layout(tmp_path / "set")
    assert len(read_layout(tmp_path / "set", base_dir=tmp_path)) == 3


@pytest.mark.parametrize("rows, problem", [
    (["clips/a.wav,normal,train", "clips/b.wav,adversarial,train", "clips/a.wav,normal,train"],
     "is listed twice"),
    (["clips/a.wav,normal,train", "clips/b.wav,adversarial,train", "./clips/a.wav,adversarial,train"],
     "is listed as normal and as adversarial"),
    (["clips/a.wav,normal,train", "clips/b.wav,adversarial,train", "clips/a.wav,normal,test"],
     "is listed in the train and the test split, which would leak"),
])
def test_bad_lists_name_both_rows(tmp_path, rows, problem):
    csv = detection_csv(tmp_path / "set", rows)
    with pytest.raises(DatasetLayoutError, match=rf"list\.csv:2 and .*list\.csv:4: the file .*a\.wav {problem}"):
        read_layout(csv)


def test_a_file_under_both_class_folders_by_a_link_is_refused(tmp_path):
    for label in ("normal", "adversarial"):
        good_clip(tmp_path / label / "a.wav")
    (tmp_path / "adversarial" / "same.wav").symlink_to(tmp_path / "normal" / "a.wav")
    with pytest.raises(DatasetLayoutError, match="listed as (normal and as adversarial|adversarial and as normal)"):
        read_layout(tmp_path)


def test_common_voice_paths_stay_in_clips_and_splits_stay_apart(tmp_path):
    root = make_commonvoice(tmp_path)
    train = (root / "train.tsv").read_text().splitlines()
    assert len(commonvoice.read_split(root, "train")) == len(train) - 1
    for entry in ("../../../../etc/passwd", "/etc/passwd.mp3", "../train.tsv"):
        (root / "dev.tsv").write_text(f"{train[0]}\nc\t{entry}\ts\thi\t1\t0\t\t\t\n")
        with pytest.raises(ListedPathError, match=r"dev\.tsv:2: .* lies outside .*clips"):
            commonvoice.read_split(root, "dev")
    first = train[1].split("\t")[1]
    (root / "dev.tsv").write_text("\n".join([train[0], train[2], train[2]]) + "\n")
    with pytest.raises(ListedPathError, match=r"dev\.tsv:2 and .*dev\.tsv:3: .* is listed twice"):
        commonvoice.read_split(root, "dev")
    (root / "test.tsv").write_text("\n".join([train[0], train[1]]) + "\n")  # a training clip in test.tsv
    with pytest.raises(ListedPathError, match=rf"test\.tsv:2 and .*train\.tsv:2: {first} is listed in both"):
        commonvoice.read_split(root, "test")


def test_speech_commands_lists_name_both_lines(tmp_path):
    for word in ("yes", "no"):
        for speaker in ("a", "b"):
            good_clip(tmp_path / word / f"{speaker}_nohash_0.wav")
    (tmp_path / "validation_list.txt").write_text("yes/a_nohash_0.wav\n")
    (tmp_path / "testing_list.txt").write_text("no/a_nohash_0.wav\nyes/a_nohash_0.wav\n")
    with pytest.raises(ListedPathError, match=r"validation_list\.txt:1 and .*testing_list\.txt:2: yes/a_nohash_0\.wav "
                                              "is in both the validation and the test list"):
        sc.scan(tmp_path)
    (tmp_path / "testing_list.txt").write_text("no/a_nohash_0.wav\nno/a_nohash_0.wav\n")
    with pytest.raises(ListedPathError, match=r"testing_list\.txt:1 and .*testing_list\.txt:2: .* is listed twice"):
        sc.scan(tmp_path)
    (tmp_path / "testing_list.txt").write_text("no/a_nohash_0.wav\n")
    good_clip(tmp_path.parent / f"{tmp_path.name}-outside.wav")
    (tmp_path / "no" / "c_nohash_0.wav").symlink_to(tmp_path.parent / f"{tmp_path.name}-outside.wav")
    with pytest.raises(ListedPathError, match=r"no/c_nohash_0\.wav \(a link\): .* lies outside"):
        sc.scan(tmp_path)


def test_librispeech_ids_cannot_name_paths_and_are_listed_once(tmp_path):
    root = make_librispeech(tmp_path)
    listing = next((root / "dev-clean").glob("*/*/*.trans.txt"))
    lines = listing.read_text().splitlines()
    listing.write_text("\n".join([lines[0], "../../../x-1-2 HELLO"]) + "\n")
    with pytest.raises(ValueError, match=r"trans\.txt:2: expected"):
        librispeech.read_split(root, "dev-clean")
    listing.write_text("\n".join([lines[0], lines[0]]) + "\n")
    with pytest.raises(ValueError, match=r"trans\.txt:1 and .*trans\.txt:2: utterance .* is listed twice"):
        librispeech.read_split(root, "dev-clean")
