"""Adversarial corpora on disk: contents, resume after a killed run, shard merge, manifest validation."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from lit_app.advsets import manifest
from lit_app.advsets.corpus import AdversarialCorpus
from lit_app.attacks import PGD, NoiseControl, checkpoint_sha256
from lit_app.data.kws import KWSDataModule
from lit_app.folders import CorpusError
from lit_app.models.kws import KWSModule
from tests.conftest import save_checkpoint

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def kws_victim(tmp_path_factory) -> Path:
    """An untrained keyword spotter on the first 0.25 s of each clip (cheap to attack)."""
    torch.manual_seed(0)
    model = KWSModule(n_mfcc=20, clip_samples=4000, dropout=0.0)
    return save_checkpoint(model, tmp_path_factory.mktemp("victims") / "kws.ckpt")


def make_corpus(root: Path, keywords: Path, victim: Path, **overrides) -> AdversarialCorpus:
    settings = dict(
        root=str(root), victim=str(victim), attack=PGD(epsilon=1024, step_size=128, iterations=10),
        source=KWSDataModule(root=str(keywords)), sources_per_split={"train": 4, "val": 2, "test": 2},
        targets_per_source=2, batch_size=4, device="cpu", show_progress=False,
    )
    settings.update(overrides)
    return AdversarialCorpus(**settings)


def test_a_built_corpus_is_complete_valid_and_follows_the_source_splits(tmp_path, tiny_keywords, kws_victim):
    corpus = make_corpus(tmp_path / "pgd", tiny_keywords, kws_victim)
    assert corpus.build()
    rows = manifest.read_manifest(corpus.root)  # validates paths, formats and lengths
    adversarial = [r for r in rows if r["kind"] == "adversarial"]
    clean = [r for r in rows if r["kind"] == "clean"]
    assert len(adversarial) == (4 + 2 + 2) * 2 and len(clean) == len(adversarial)
    assert {r["split"]: r["source_split"] for r in rows} == {"train": "train", "val": "validation", "test": "testing"}
    # Synthetic voices belong to one split only, so test voices are unseen in training.
    groups = {split: {r["group"] for r in rows if r["split"] == split} for split in ("train", "val", "test")}
    assert not groups["train"] & groups["test"] and not groups["train"] & groups["val"]
    described = json.loads((corpus.root / "corpus.json").read_text())["victim_description"]
    assert described.startswith("keyword spotter: TensorFlow's conv model") and "20 MFCC" in described
    assert described in (corpus.root / "README.md").read_text()  # the card says which victim was attacked
    sha = checkpoint_sha256(kws_victim)
    for r in adversarial:
        assert r["success"] == (r["prediction"] == r["target"]) and r["target"] != r["source_label"]
        assert r["victim_sha256"] == sha and json.loads(r["attack_settings"]) == corpus.attack.settings()
        assert r["linf"] <= 1024 and r["queries"] >= r["iterations"] >= 1
    # The recorded distortion is that of the files on disk.
    clean_of = {r["source_id"]: r for r in rows if r["kind"] == "clean"}
    for r in adversarial[:4]:
        x = sf.read(corpus.root / clean_of[r["source_id"]]["path"], dtype="int16")[0].astype(float)
        d = sf.read(corpus.root / r["path"], dtype="int16")[0].astype(float) - x
        assert r["db_x"] == pytest.approx(20 * np.log10(np.abs(d).max() / np.abs(x).max()), abs=1e-3)
        assert r["snr_db"] == pytest.approx(10 * np.log10((x**2).sum() / (d**2).sum()), abs=1e-3)
    # Clean clips are the sources as the victim sees them (its first 4000 samples), bit for bit.
    for r in clean:
        written, _ = sf.read(corpus.root / r["path"], dtype="int16")
        source, _ = sf.read(r["source_path"], dtype="int16")
        assert np.array_equal(written, source[:4000])
    # Every attacked source is also a clean clip of the same split.
    assert {(r["source_id"], r["split"]) for r in adversarial} <= {(r["source_id"], r["split"]) for r in clean}
    card = (corpus.root / "README.md").read_text()
    assert "| test | 4 | 4 | 0 |" in card and "success:" in card
    stamp = (corpus.root / "manifest.csv").stat().st_mtime_ns
    assert corpus.build() and (corpus.root / "manifest.csv").stat().st_mtime_ns == stamp
    with pytest.raises(CorpusError, match="attack_settings"):
        make_corpus(tmp_path / "pgd", tiny_keywords, kws_victim, attack=PGD(epsilon=512)).build()


def write_config(folder: Path, corpus_root: Path, keywords: Path, victim: Path) -> Path:
    """A data config laid out like the repo's: the corpus and its attack in files of their own, named by path."""
    (folder / "attacks").mkdir(parents=True)
    (folder / "attacks" / "pgd.yaml").write_text(json.dumps(
        {"class_path": "lit_app.attacks.PGD", "init_args": {"epsilon": 1024, "iterations": 40, "check_every": 0}}))
    (folder / "corpus.yaml").write_text(json.dumps({
        "root": str(corpus_root), "victim": str(victim), "attack": "attacks/pgd.yaml",
        "source": {"class_path": "lit_app.data.kws.KWSDataModule", "init_args": {"root": str(keywords)}},
        "sources_per_split": {"train": 4, "val": 2, "test": 2}, "targets_per_source": 2, "batch_size": 1,
        "device": "cpu", "show_progress": False,
    }))
    config = folder / "config.yaml"
    config.write_text(json.dumps({"data": {"class_path": "lit_app.advsets.datamodule.AdversarialDataModule",
                                           "init_args": {"train_sets": ["corpus.yaml"]}}}))
    return config


def start_generation(config: Path, root: Path, rows: int) -> tuple[subprocess.Popen, Path]:
    """``lit_app.advsets.generate`` on ``config`` in a child process, returned once the corpus at ``root`` has
    recorded ``rows`` progress rows (the child is killed if that never happens), with its progress file."""
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    process = subprocess.Popen([sys.executable, "-m", "lit_app.advsets.generate", "--config", str(config)],
                               env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    progress = root / "progress" / "shard-000-of-001.jsonl"
    deadline = time.monotonic() + 120
    try:
        while not (progress.is_file() and progress.read_text().count("\n") >= rows):
            assert process.poll() is None, process.stderr.read().decode()[-2000:]
            assert time.monotonic() < deadline, "generation did not start"
            time.sleep(0.01)
    except BaseException:
        process.kill()
        raise
    return process, progress


def test_a_killed_generation_run_resumes_without_duplicates_or_gaps(tmp_path, tiny_keywords, kws_victim):
    from lit_app.advsets.generate import main

    root = tmp_path / "killed"
    config = write_config(tmp_path / "configs", root, tiny_keywords, kws_victim)
    process, progress = start_generation(config, root, rows=3)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert not (root / "manifest.csv").exists()
    recorded = progress.read_text().count("\n")
    # What a kill can leave behind besides: a half-written row and a temporary WAV.
    with open(progress, "a") as handle:
        handle.write('{"id": "adv-0000')
    (root / "adversarial" / "train" / ".adv-000001.wav.x.part").write_bytes(b"RIFF")

    main(["--config", str(config)])
    rows = manifest.read_manifest(root)
    plan = json.loads((root / "plan.json").read_text())["jobs"]
    assert [r["id"] for r in rows] == [job["id"] for job in plan] and len({r["id"] for r in rows}) == len(rows) == 32
    assert recorded < len(rows)
    assert not list(root.rglob("*.part"))
    files = {p.relative_to(root).as_posix() for p in root.rglob("*.wav")}
    assert files == {r["path"] for r in rows}


def test_shards_merge_into_the_corpus_one_process_makes(tmp_path, tiny_keywords, kws_victim):
    single = make_corpus(tmp_path / "single", tiny_keywords, kws_victim, batch_size=2)
    assert single.build()
    sharded = make_corpus(tmp_path / "sharded", tiny_keywords, kws_victim, batch_size=2)
    assert not sharded.build(shard=1, num_shards=2)
    assert sharded.missing() and not (sharded.root / "manifest.csv").exists()
    assert sharded.build(shard=0, num_shards=2)
    assert sorted(p.name for p in (sharded.root / "progress").iterdir()) == ["shard-000-of-002.jsonl", "shard-001-of-002.jsonl"]
    one, two = manifest.read_manifest(single.root), manifest.read_manifest(sharded.root)
    assert [r["id"] for r in one] == [r["id"] for r in two]
    # A batch's result depends on the plan and its seed only, not on which shard made it.
    for a, b in zip(one, two):
        assert a["seed"] == b["seed"] and a["success"] == b["success"]
        assert (single.root / a["path"]).read_bytes() == (sharded.root / b["path"]).read_bytes()


def test_the_noise_control_matches_the_snr_of_each_adversarial_example(tmp_path, tiny_keywords, kws_victim):
    attacked = make_corpus(tmp_path / "pgd", tiny_keywords, kws_victim)
    assert attacked.build()
    noise = AdversarialCorpus(root=str(tmp_path / "noise"), victim=str(kws_victim), attack=NoiseControl(),
                              match=str(attacked.root), batch_size=8, device="cpu", show_progress=False)
    assert noise.build()
    adversarial = {(r["source_id"], r["target"]): r for r in manifest.read_manifest(attacked.root)
                   if r["kind"] == "adversarial" and r["success"]}
    noisy = [r for r in manifest.read_manifest(noise.root) if r["kind"] == "noise"]
    assert len(noisy) == len(adversarial) > 0
    for r in noisy:
        twin = adversarial[(r["source_id"], r["target"])]
        assert r["label"] == "normal" and r["split"] == twin["split"] and r["group"] == twin["group"]
        assert r["snr_db"] == pytest.approx(twin["snr_db"], abs=0.3)


def valid_row(path: str) -> dict:
    row = {field: "" for field in manifest.FIELDS}
    row.update(id=path, path=path, kind="clean", label="normal", split="train", num_samples=100)
    return row


def test_manifest_validation_refuses_paths_outside_the_corpus(tmp_path):
    root = tmp_path / "corpus"
    (root / "clean").mkdir(parents=True)
    sf.write(root / "clean" / "ok.wav", np.zeros(100, np.int16), 16000, subtype="PCM_16")
    sf.write(tmp_path / "outside.wav", np.zeros(100, np.int16), 16000, subtype="PCM_16")
    (root / "clean" / "link.wav").symlink_to(tmp_path / "outside.wav")
    manifest.write_manifest(root, [valid_row("clean/ok.wav")])
    assert len(manifest.read_manifest(root)) == 1
    for bad, message in (("../outside.wav", "outside the corpus"), (str(tmp_path / "outside.wav"), "not relative"),
                         ("clean/link.wav", "outside the corpus"), ("clean/missing.wav", "missing")):
        manifest.write_manifest(root, [valid_row("clean/ok.wav"), valid_row(bad)])
        with pytest.raises(manifest.ManifestError, match=message):
            manifest.read_manifest(root)
    sf.write(root / "clean" / "fast.wav", np.zeros(100, np.int16), 22050, subtype="PCM_16")
    manifest.write_manifest(root, [valid_row("clean/fast.wav")])
    with pytest.raises(manifest.ManifestError, match="22050 Hz"):
        manifest.read_manifest(root)
    manifest.write_manifest(root, [valid_row("clean/ok.wav"), valid_row("clean/ok.wav")])
    with pytest.raises(manifest.ManifestError, match="duplicate id"):
        manifest.read_manifest(root)


def test_a_noise_control_waits_for_its_counterpart_and_goes_stale_with_it(tmp_path, tiny_keywords, kws_victim):
    attacked = make_corpus(tmp_path / "pgd", tiny_keywords, kws_victim, sources_per_split={"train": 2, "test": 1})
    noise = AdversarialCorpus(root=str(tmp_path / "noise"), victim=str(kws_victim), attack=NoiseControl(),
                              match=str(attacked.root), device="cpu", show_progress=False)
    with pytest.raises(FileNotFoundError, match="build that corpus first"):
        noise.build()
    assert not (tmp_path / "noise").exists() and not noise.is_complete()
    assert attacked.build() and noise.build() and noise.is_complete()
    # Rebuilding the counterpart differently makes the noise control stale, and refused as it is.
    shutil.rmtree(attacked.root)
    assert make_corpus(tmp_path / "pgd", tiny_keywords, kws_victim, sources_per_split={"train": 3, "test": 1}).build()
    assert not noise.is_complete()
    with pytest.raises(CorpusError, match="match_manifest_sha256"):
        noise.build()
