"""AdversarialDataModule: builds its corpora, serves the detection contract, keeps splits apart, logs to W&B."""

from __future__ import annotations

import csv
import shutil
from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch
import yaml

from lit_app.advsets import detection, manifest
from lit_app.advsets.corpus import AdversarialCorpus
from lit_app.advsets.datamodule import AdversarialDataModule, LeakageError, check_leakage
from lit_app.advsets.detection import DetectionBatch
from lit_app.attacks import PGD, NoiseControl
from tests.conftest import QUIET_TRAINER
from tests.test_adversarial_corpus import kws_victim, make_corpus  # noqa: F401  (kws_victim is a fixture)

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def corpora(tmp_path_factory, tiny_keywords, kws_victim):  # noqa: F811
    """A PGD corpus whose weak bound leaves some attacks failed, and its noise control (not built yet). The bound is
    tiny: the untrained victim's magnitude MFCCs (TensorFlow's) move a lot on these clips' near-silent parts."""
    base = tmp_path_factory.mktemp("adversarial")
    attacked = make_corpus(base / "pgd", tiny_keywords, kws_victim, attack=PGD(epsilon=12, step_size=3, iterations=4),
                           sources_per_split={"train": 6, "val": 2, "test": 3})
    noise = AdversarialCorpus(root=str(base / "noise"), victim=str(kws_victim), attack=NoiseControl(),
                              match=str(attacked.root), batch_size=16, device="cpu", show_progress=False)
    return attacked, noise


def counts(dataset) -> tuple[int, int]:
    labels = dataset.labels
    return labels.count(0), labels.count(1)


def test_prepare_data_builds_the_corpora_then_batches_follow_the_detection_contract(corpora):
    attacked, noise = corpora
    module = AdversarialDataModule(train_sets=[attacked], test_sets=[attacked, noise], batch_size=5)
    module.prepare_data()  # builds both; the noise control after the corpus it matches
    assert attacked.is_complete() and noise.is_complete()
    module.setup("fit")
    module.setup("test")
    batch = next(iter(module.train_dataloader()))
    assert isinstance(batch, DetectionBatch) and batch.audio.dtype == torch.float32 and batch.audio.shape[0] == 5
    assert batch.lengths.dtype == torch.long and set(batch.labels.tolist()) <= {0, 1}
    assert torch.equal(batch.audio * 32768, torch.round(batch.audio * 32768))  # 16-bit clips, read untouched
    rows = manifest.read_manifest(attacked.root)
    for split in ("train", "val"):
        won = sum(r["kind"] == "adversarial" and r["success"] and r["split"] == split for r in rows)
        assert 0 < won < sum(r["kind"] == "adversarial" and r["split"] == split for r in rows)
        # Only successful adversarial examples, and as many normal clips.
        assert counts(module.datasets[split]) == (won, won)
    # Noise-control clips are normal by default, so the test split has more normal clips than adversarial.
    normal, adversarial = counts(module.datasets["test"])
    assert normal > adversarial > 0
    assert module.labels == ["normal", "adversarial"]


def test_clips_are_read_once_then_served_from_memory_unless_told_otherwise(corpora, monkeypatch):
    attacked, _ = corpora
    reads = []
    original = detection.read_audio
    monkeypatch.setattr(detection, "read_audio", lambda path, policy: reads.append(path) or original(path, policy))
    epochs = {}
    for cache in (True, False):
        module = AdversarialDataModule(train_sets=[attacked], batch_size=4, cache_audio=cache)
        module.prepare_data()
        reads.clear()
        module.setup("fit")  # a cache is filled here, in one read of each clip
        torch.manual_seed(0)  # the same shuffles
        epochs[cache] = [[batch.audio for batch in module.train_dataloader()] for _ in range(3)]
        train = {path for path, _ in module.datasets["train"].items}
        assert sum(path in train for path in reads) == len(train) * (1 if cache else 3)
    for cached, uncached in zip(epochs[True], epochs[False]):  # the same clips, in the same order
        assert all(torch.equal(a, b) for a, b in zip(cached, uncached))


def test_failed_attacks_and_noise_labels_are_choices(corpora):
    attacked, noise = corpora
    every = AdversarialDataModule(train_sets=[attacked], include_failed=True, balance_classes=False)
    every.prepare_data()
    every.setup("fit")
    rows = manifest.read_manifest(attacked.root)
    adversarial = sum(r["kind"] == "adversarial" and r["split"] == "train" for r in rows)
    assert counts(every.datasets["train"])[1] == adversarial
    # Unknown-attack set-up: train on one corpus, test on another; noise flagged as the positive class.
    unknown = AdversarialDataModule(train_sets=[attacked], test_sets=[noise], noise_label="adversarial")
    unknown.prepare_data()
    unknown.setup("test")
    served = {Path(path).parent.parent.parent for path, _ in unknown.datasets["test"].items}
    assert served == {noise.root} and counts(unknown.datasets["test"])[0] == counts(unknown.datasets["test"])[1]
    # Matched noise as extra normal training clips: only the noise clips of the control, all labelled normal.
    negatives = AdversarialDataModule(train_sets=[noise], kinds=["noise"], noise_label="normal")
    negatives.prepare_data()
    negatives.setup("fit")
    noise_rows = [r for r in manifest.read_manifest(noise.root) if r["split"] == "train"]
    assert counts(negatives.datasets["train"]) == (sum(r["kind"] == "noise" for r in noise_rows), 0) != (0, 0)
    assert all("/noise/" in path for path, _ in negatives.datasets["train"].items)
    with pytest.raises(ValueError, match="kinds is empty"):
        AdversarialDataModule(train_sets=[noise], kinds=[])


def test_train_sources_serve_nested_prefixes_of_the_plan_for_learning_curves(corpora):
    attacked, _ = corpora
    rows = {str(attacked.root / r["path"]): r for r in manifest.read_manifest(attacked.root)}

    def served(**options) -> AdversarialDataModule:
        module = AdversarialDataModule(train_sets=[attacked], include_failed=True, balance_classes=False, **options)
        module.prepare_data()
        module.setup("fit")
        return module

    every = served()
    previous: set[str] = set()
    for count in (1, 3, 6):
        module = served(train_sources=count)
        train = {path for path, _ in module.datasets["train"].items}
        attacked_sources = {rows[p]["source_id"] for p in train if rows[p]["kind"] == "adversarial"}
        assert len(attacked_sources) == count and previous < train  # the smaller size is a subset of the larger
        # Every example of each kept source, and clean clips in the whole split's proportion (one per example here).
        assert counts(module.datasets["train"])[1] == 2 * count == counts(module.datasets["train"])[0]
        assert module.datasets["val"].items == every.datasets["val"].items  # validation is not cut
        previous = train
    assert previous == {path for path, _ in every.datasets["train"].items}  # 6 sources: the whole split
    with pytest.raises(ValueError, match="train_sources must be at least 1"):
        AdversarialDataModule(train_sets=[attacked], train_sources=0)


def test_no_source_clip_or_voice_is_served_in_two_splits(corpora, tmp_path):
    attacked, _ = corpora
    attacked.build()
    rows = manifest.read_manifest(attacked.root)
    check_leakage(rows)
    moved = [dict(r) for r in rows]
    victim = next(r for r in moved if r["kind"] == "adversarial" and r["split"] == "test")
    victim["split"] = "train"
    with pytest.raises(LeakageError, match="source_id"):
        check_leakage(moved)
    # A tampered manifest (an adversarial clip moved to another split than its source) is refused at setup.
    copy = tmp_path / "copy"
    shutil.copytree(attacked.root, copy)
    with open(attacked.root / "manifest.csv", newline="") as handle:
        text_rows = list(csv.DictReader(handle))
    for row in text_rows:
        if row["id"] == victim["id"]:
            row["split"] = "train"
    manifest.write_manifest(copy, text_rows)
    tampered = AdversarialCorpus(**{**vars_of(attacked), "root": str(copy)})
    module = AdversarialDataModule(train_sets=[tampered])
    with pytest.raises(LeakageError):
        module.setup("fit")


def vars_of(corpus: AdversarialCorpus) -> dict:
    names = ("victim", "attack", "source", "match", "sources_per_split", "source_labels", "targets",
             "targets_per_source", "stratify", "require_correct", "normal_per_adversarial", "batch_size", "seed",
             "device", "show_progress")
    return {name: getattr(corpus, name) for name in names}


def cli_datamodule(*args: str) -> AdversarialDataModule:
    """The data module that ``lit-app`` builds from these arguments (nothing is run)."""
    from lit_app.cli import LitAppCLI

    return LitAppCLI(args=[*args, "--model", "KWSModule", "--trainer.logger", "false"], run=False).datamodule


@pytest.mark.parametrize("config", sorted((REPO / "configs" / "adversarial").glob("*.yaml")), ids=lambda p: p.stem)
def test_every_adversarial_config_builds_the_data_module(config, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    module = cli_datamodule("-c", str(config))
    assert isinstance(module, AdversarialDataModule) and module.train_sets and module.test_sets
    for corpus in module.corpora():
        assert (corpus.source is None) != (corpus.match is None)
        assert corpus.attack.settings()  # every attack reports its settings for the manifest


@pytest.mark.parametrize("config", sorted((REPO / "configs" / "adversarial" / "sets").glob("*.yaml")),
                         ids=lambda p: p.stem)
def test_every_attack_set_config_loads_with_its_attack(config, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (corpus,) = cli_datamodule("--data", "lit_app.advsets.datamodule.AdversarialDataModule", "--data.train_sets",
                               f"[{config}]").corpora()
    assert str(corpus.root).endswith(yaml.safe_load(config.read_text())["root"]) and corpus.attack.settings()


def test_results_table_and_audio_pairs_go_to_wandb(corpora, tmp_path, monkeypatch):
    import wandb
    from pytorch_lightning.loggers import WandbLogger

    from lit_app.advsets.wandb_log import example_pairs, log_corpora, results_table

    attacked, _ = corpora
    attacked.build()
    rows = manifest.read_manifest(attacked.root)
    pairs = example_pairs(attacked.root, rows, 3)
    assert len(pairs) == 3 and all(c["source_id"] == p["source_id"] and c["kind"] == "clean" for c, p in pairs)
    assert all(p["success"] for _, p in pairs) and pairs[0][1]["split"] == "test"
    table = results_table({attacked.root: rows})
    assert [row[2] for row in table] == ["train", "val", "test"] and all(row[1] == "pgd" for row in table)
    monkeypatch.setenv("WANDB_MODE", "offline")  # restored afterwards: the other tests keep W&B disabled
    logger = WandbLogger(project="lit-app-tests", save_dir=str(tmp_path), offline=True)
    log_corpora(logger, {attacked.root: rows}, 2)
    wandb.finish()
    media = list(tmp_path.rglob("files/media/*/adversarial/*"))
    assert sum(p.suffix == ".wav" for p in media) == 4  # two clean/adversarial pairs, written offline
    assert {p.name.split("_")[0] for p in media if p.suffix == ".json"} == {"results", "examples"}


class Probe(pl.LightningModule):
    """Takes one step on detection batches, so the data module's setup runs in every rank."""

    def __init__(self) -> None:
        super().__init__()
        self.weight = torch.nn.Parameter(torch.zeros(1))

    def training_step(self, batch, batch_idx):
        return ((batch.audio.abs().mean(1) * self.weight - batch.labels.float()) ** 2).mean()

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


@pytest.mark.multiprocess
def test_each_rank_generates_its_own_shard(tmp_path, tiny_keywords, kws_victim):  # noqa: F811
    from datetime import timedelta

    from pytorch_lightning.strategies import DDPStrategy

    corpus = make_corpus(tmp_path / "ddp", tiny_keywords, kws_victim, batch_size=2,
                         sources_per_split={"train": 2, "val": 1, "test": 1})
    module = AdversarialDataModule(train_sets=[corpus], batch_size=2)
    trainer = pl.Trainer(devices=2, max_steps=1, limit_val_batches=0, **QUIET_TRAINER,
                         strategy=DDPStrategy(start_method="spawn", process_group_backend="gloo", timeout=timedelta(seconds=120)))
    trainer.fit(Probe(), datamodule=module)
    assert corpus.is_complete()
    shards = sorted(p.name for p in (corpus.root / "progress").iterdir())
    assert shards == ["shard-000-of-002.jsonl", "shard-001-of-002.jsonl"]
    assert all((corpus.root / "progress" / name).read_text().strip() for name in shards)
    assert len(manifest.read_manifest(corpus.root)) == 16
