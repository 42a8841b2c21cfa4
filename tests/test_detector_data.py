"""External detection datasets: set A, class folders and CSV layouts, group splits, the batch contract."""

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from lit_app.advsets.detection import ADVERSARIAL, NORMAL
from lit_app.advsets.external import (
    DatasetLayoutError,
    DetectionClip,
    ExternalDetectionDataModule,
    read_class_folders,
    read_csv_list,
    read_layout,
    read_set_a,
    split_by_group,
)
from lit_app.advsets.mixture import DetectionMixture
from lit_app.audio.io import AudioError, write_wav


def clip(path: Path, seconds: float = 0.2, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    write_wav(path, (0.3 * rng.standard_normal(int(seconds * 16000))).clip(-1, 1).astype(np.float32))
    return path


def make_set_a(root: Path, ids_per_length: int = 4) -> Path:
    """The set A layout as its users describe it, with a few clips per folder."""
    lengths = ("short", "medium", "long")
    number = 0
    for source in lengths:
        base = root / "Adversarial-Examples" / f"{source}-signals"
        for _ in range(ids_per_length):
            number += 1
            clip_id = f"{number:06d}"
            clip(base / "Original-examples" / f"sample-{clip_id}.wav", seed=number)
            for target in lengths:
                clip(base / f"adv-{source}-target" / f"adv-{source}2{target}-{clip_id}.wav", seed=number)
            clip(root / "Normal-Examples" / f"{source}-signals" / f"sample-{500000 + number:06d}.wav", seed=number)
    (root / "Normal-Examples" / "short-signals" / "list.csv").write_text("filename\n")  # CSV lists are ignored
    return root


def test_set_a_reader_labels_groups_and_attacks(tmp_path):
    clips = read_set_a(make_set_a(tmp_path))
    adversarial = [c for c in clips if c.label == ADVERSARIAL]
    assert len(adversarial) == 3 * 4 * 3 and len(clips) - len(adversarial) == 12
    assert {c.attack for c in adversarial} == {f"cw-{s}2{t}" for s in ("short", "medium", "long") for t in ("short", "medium", "long")}
    by_group = {}
    for c in adversarial:
        by_group.setdefault(c.group, []).append(c)
    assert len(by_group) == 12 and all(len(v) == 3 for v in by_group.values())
    with_originals = read_set_a(tmp_path, include_originals=True)
    originals = [c for c in with_originals if "Original-examples" in c.path.parts]
    assert len(originals) == 12 and all(c.label == NORMAL and c.group in by_group for c in originals)
    assert read_layout(tmp_path) == clips  # auto-detected


def test_set_a_split_keeps_sources_with_their_adversarial_clips(tmp_path):
    module = ExternalDetectionDataModule(str(make_set_a(tmp_path)), include_originals=True, split_fractions=(0.5, 0.25, 0.25), seed=3)
    splits = module.split_clips()
    groups = {name: {c.group for c in members} for name, members in splits.items()}
    assert not (groups["train"] & groups["val"]) and not (groups["train"] & groups["test"]) and not (groups["val"] & groups["test"])
    assert sum(len(v) for v in splits.values()) == 36 + 24
    for members in splits.values():
        assert {c.label for c in members} == {NORMAL, ADVERSARIAL}


def test_split_by_group_fractions_and_determinism():
    clips = [DetectionClip(Path(f"{g}-{k}.wav"), k % 2, f"g{g}") for g in range(100) for k in range(2)]
    first, again = split_by_group(clips, (0.7, 0.1, 0.2), seed=1), split_by_group(clips, (0.7, 0.1, 0.2), seed=1)
    assert first == again and split_by_group(clips, (0.7, 0.1, 0.2), seed=2) != first
    assert [len(first[s]) for s in ("train", "val", "test")] == [140, 20, 40]
    fixed = [DetectionClip(Path("x.wav"), 0, "x", split="test")]
    assert split_by_group(fixed + clips)["test"][0] == fixed[0]


def test_class_folders_with_attack_subfolders_and_stem_pairing(tmp_path):
    for i in range(6):
        clip(tmp_path / "normal" / f"c{i}.wav", seed=i)
        clip(tmp_path / "adversarial" / ("pgd" if i % 2 else "cw") / f"c{i}.wav", seed=i)
    clip(tmp_path / "adversarial" / "loose.wav")
    clips = read_class_folders(tmp_path)
    assert {c.attack for c in clips if c.label == ADVERSARIAL} == {"pgd", "cw", "adversarial"}
    assert sorted(c.label for c in clips if c.group == "c3") == [NORMAL, ADVERSARIAL]
    module = ExternalDetectionDataModule(str(tmp_path), attacks=["pgd"], split_fractions=(0.5, 0.25, 0.25))
    kept = [c for split in module.split_clips().values() for c in split]
    assert {c.attack for c in kept if c.label == ADVERSARIAL} == {"pgd"} and sum(c.label == NORMAL for c in kept) == 6
    with pytest.raises(DatasetLayoutError, match="fgsm"):
        ExternalDetectionDataModule(str(tmp_path), attacks=["fgsm"]).split_clips()
    # a group pattern can pair differently named files (adversarial/x/adv_c1.wav with normal/c1.wav); a file
    # it does not match is named
    with pytest.raises(DatasetLayoutError, match="loose.wav"):
        read_class_folders(tmp_path, group_pattern=r"(c\d)\.wav$")
    (tmp_path / "adversarial" / "loose.wav").unlink()
    clip(tmp_path / "adversarial" / "cw" / "adv_c1.wav")
    paired = read_class_folders(tmp_path, group_pattern=r"(c\d)\.wav$")
    assert sorted(c.path.name for c in paired if c.group == "c1") == ["adv_c1.wav", "c1.wav", "c1.wav"]


def test_class_folders_with_fixed_splits(tmp_path):
    for split in ("train", "validation", "test"):
        for i in range(2):
            clip(tmp_path / split / "clean" / f"{split}{i}.wav")
            clip(tmp_path / split / "adv" / f"{split}{i}.wav")
    module = ExternalDetectionDataModule(str(tmp_path))
    assert {name: len(v) for name, v in module.split_clips().items()} == {"train": 4, "val": 4, "test": 4}
    with pytest.raises(DatasetLayoutError, match="normal/ and an adversarial/"):
        (tmp_path / "empty").mkdir()
        read_class_folders(tmp_path / "empty")


def test_csv_with_and_without_header(tmp_path):
    for i in range(4):
        clip(tmp_path / "audio" / f"n{i}.wav")
        clip(tmp_path / "audio" / f"a{i}.wav")
    rows = [f"audio/n{i}.wav,normal,src{i}" for i in range(4)] + [f"audio/a{i}.wav,adversarial,src{i},genetic" for i in range(4)]
    (tmp_path / "plain.csv").write_text("\n".join(rows) + "\n")
    plain = read_csv_list(tmp_path / "plain.csv")
    assert [c.label for c in plain] == [0] * 4 + [1] * 4 and plain[4].group == "src0" and plain[4].attack == "genetic"
    assert plain[0].path == tmp_path / "audio" / "n0.wav"
    (tmp_path / "header.csv").write_text("label,path,source_clip\n" + "".join(f"{i % 2},audio/n{i}.wav,s\n" for i in range(4)))
    headed = read_csv_list(tmp_path / "header.csv")
    assert [c.label for c in headed] == [0, 1, 0, 1] and {c.group for c in headed} == {"s"}
    (tmp_path / "bad.csv").write_text("audio/n0.wav,maybe\n")
    with pytest.raises(DatasetLayoutError, match="maybe"):
        read_csv_list(tmp_path / "bad.csv")


def test_data_module_serves_the_batch_contract_and_refuses_resampling(tmp_path):
    for i in range(8):
        clip(tmp_path / "normal" / f"c{i}.wav", seconds=0.1 + 0.05 * i, seed=i)
        clip(tmp_path / "adversarial" / f"c{i}.wav", seconds=0.1 + 0.05 * i, seed=100 + i)
    module = ExternalDetectionDataModule(str(tmp_path), split_fractions=(0.5, 0.25, 0.25), batch_size=4)
    assert module.labels == ["normal", "adversarial"]
    module.setup("fit")
    batch = next(iter(module.train_dataloader()))
    assert batch.audio.dtype == torch.float32 and batch.lengths.dtype == torch.long and batch.labels.dtype == torch.long
    assert batch.audio.shape == (4, int(batch.lengths.max()))
    for row, length in enumerate(batch.lengths.tolist()):
        assert batch.audio[row, length:].abs().sum() == 0 and batch.audio[row, :length].abs().sum() > 0
    # the pair c<i> is in one split
    splits = module.split_clips()
    assert all(len({s for s, members in splits.items() for c in members if c.group == f"c{i}"}) == 1 for i in range(8))
    sf.write(tmp_path / "adversarial" / "c0.wav", np.zeros(800, dtype=np.int16), 8000, subtype="PCM_16")
    strict = ExternalDetectionDataModule(str(tmp_path), split_fractions=(1.0, 1.0, 1.0))
    with pytest.raises(AudioError, match="8000 Hz"):
        for stage in ("fit", "test"):
            strict.setup(stage)
    skipping = ExternalDetectionDataModule(str(tmp_path), split_fractions=(1.0, 1.0, 1.0), skip_bad_files=True)
    for stage in ("fit", "test"):
        skipping.setup(stage)
    assert sum(len(d) for d in skipping.datasets.values()) == 15


def test_mixture_pools_sources(tmp_path):
    modules = []
    for name, count in (("a", 4), ("b", 6)):
        for i in range(count):
            clip(tmp_path / name / "normal" / f"c{i}.wav", seed=i)
            clip(tmp_path / name / "adversarial" / f"c{i}.wav", seed=i)
        modules.append(ExternalDetectionDataModule(str(tmp_path / name), split_fractions=(0.5, 0.0, 0.5), batch_size=2))
    for module in modules:  # a source without validation clips is refused with its name
        with pytest.raises(DatasetLayoutError, match="val split is empty"):
            module.setup("fit")
    mixture = DetectionMixture(modules, batch_size=3)
    mixture.setup("test")
    assert len(mixture.datasets["test"]) == sum(len(m.datasets["test"]) for m in modules) == 10
    batch = next(iter(mixture.test_dataloader()))
    assert batch.audio.shape[0] == 3 and mixture.labels == ["normal", "adversarial"]
