"""LightningDataModule serving normal and adversarial clips for detection, from corpora it builds first.

``prepare_data`` builds (or resumes) every adversarial corpus it is given; with several devices each rank
makes its own shard during ``setup`` and rank 0 merges them. Batches follow the detection contract
(:func:`lit_app.advsets.detection.collate_detection`): ``(audio [B, T], lengths [B], labels [B])`` with
``0`` normal and ``1`` adversarial.

Training and validation clips come from the ``train`` and ``val`` splits of ``train_sets``; test clips from
the ``test`` split of ``test_sets`` (``train_sets`` when omitted). That choice sets up the paper's
experiments: known attack (same corpora), unknown attack (other corpora), multi-condition (several).
Splits follow the source corpora, so an adversarial clip and its source (and its voice) never straddle
splits; ``setup`` checks this and refuses leaky data.
"""

from __future__ import annotations

import logging
import random
from operator import itemgetter
from pathlib import Path
from typing import Any, Literal

from lit_app.advsets import manifest
from lit_app.advsets.corpus import AdversarialCorpus
from lit_app.advsets.detection import (
    ADVERSARIAL,
    DETECTION_LABELS,
    NORMAL,
    DetectionClipDataset,
    DetectionDataModule,
    balance,
)
from lit_app.splits import STAGE_SPLITS

log = logging.getLogger(__name__)


class LeakageError(RuntimeError):
    """The same source clip or voice would be served in two splits."""


def check_leakage(rows: list[dict[str, Any]]) -> None:
    """Refuse rows whose source clip or group (voice) appears in more than one split.

    Raises:
        LeakageError: naming a few offending sources.
    """
    for key in ("source_id", "group"):
        splits: dict[str, set[str]] = {}
        for row in rows:
            if row[key]:
                splits.setdefault(row[key], set()).add(row["split"])
        leaks = sorted(value for value, seen in splits.items() if len(seen) > 1)
        if leaks:
            shown = ", ".join(f"{v} ({'/'.join(sorted(splits[v]))})" for v in leaks[:5])
            raise LeakageError(f"{len(leaks)} {key} values appear in several splits, e.g. {shown}. An adversarial "
                               "clip and its source must stay in one split: rebuild the corpora from sources split "
                               "by speaker or voice.")


def first_sources(rows: list[dict[str, Any]], count: int, where: Path) -> list[dict[str, Any]]:
    """The rows of the first ``count`` attacked source clips in plan order (job ids number the plan), and the clean
    rows that come first in the plan, as many per perturbed row as the whole split has."""
    perturbed = sorted((r for r in rows if r["kind"] != "clean"), key=itemgetter("id"))
    clean = sorted((r for r in rows if r["kind"] == "clean"), key=itemgetter("id"))
    kept_sources = list(dict.fromkeys(r["source_id"] for r in perturbed))[:count]
    if len(kept_sources) < count:
        log.warning("%s: train_sources=%d, but the train split has %d attacked sources; serving them all", where,
                    count, len(kept_sources))
    kept = set(kept_sources)
    chosen = [r for r in perturbed if r["source_id"] in kept]
    clean_count = round(len(clean) * len(chosen) / len(perturbed)) if perturbed else len(clean)
    return chosen + clean[:clean_count]


class AdversarialDataModule(DetectionDataModule):
    """Detection data from adversarial corpora, built or resumed before use.

    Args:
        train_sets: corpora whose ``train`` and ``val`` splits are served for fitting (mixed together).
        test_sets: corpora whose ``test`` split is served for testing; ``train_sets`` when omitted.
        batch_size: clips per batch.
        include_failed: also serve adversarial clips whose attack failed (labelled adversarial).
        balance_classes: in each corpus and split, drop random clips of the larger class to match the smaller.
        noise_label: label of noise-control clips: ``normal`` (they are benign) or ``adversarial`` (to measure
            whether a detector flags mere noise).
        kinds: which kinds of clip to serve (``clean``, ``adversarial``, ``noise``); every kind by default.
            ``[noise]`` with ``noise_label: normal`` adds a noise control's clips, at the SNR of the attack it
            matches, to a detector's normal training clips.
        seed: seed of the class balancing.
        num_workers: DataLoader worker processes reading the WAVs.
        cache_audio: read the clips once, at setup, and keep them in memory as int16 (bit for bit what the files
            hold), not once per epoch (a grid of detectors shares the data module, hence one read per clip for the
            whole grid). Turn it off for sets larger than memory.
        log_pairs: clean/adversarial pairs per corpus logged to W&B at setup (with the results table).
        train_sources: serve only the first N attacked source clips of each training corpus's ``train`` split, with
            their adversarial examples and clean clips in the set's own proportion: the training sizes of a
            learning curve. The plan's order keeps every prefix balanced over labels or durations, so smaller
            sizes are subsets of larger ones. Validation and test clips are unchanged; ``None`` serves them all.
    """

    def __init__(
        self,
        train_sets: list[AdversarialCorpus],
        test_sets: list[AdversarialCorpus] | None = None,
        batch_size: int = 32,
        include_failed: bool = False,
        balance_classes: bool = True,
        noise_label: Literal["normal", "adversarial"] = "normal",
        kinds: list[Literal["clean", "adversarial", "noise"]] | None = None,
        seed: int = 0,
        num_workers: int = 0,
        cache_audio: bool = True,
        log_pairs: int = 4,
        train_sources: int | None = None,
    ) -> None:
        super().__init__(batch_size, num_workers)
        if not train_sets:
            raise ValueError("give at least one adversarial corpus in train_sets")
        self.train_sets = list(train_sets)
        self.test_sets = list(test_sets) if test_sets else list(train_sets)
        self.include_failed = include_failed
        self.balance_classes = balance_classes
        self.noise_label = noise_label
        self.kinds = set(kinds) if kinds is not None else {"clean", "adversarial", "noise"}
        if not self.kinds:
            raise ValueError("kinds is empty: name at least one of clean, adversarial, noise (or leave it out for all)")
        self.seed = seed
        self.cache_audio = cache_audio
        self.log_pairs = log_pairs
        if train_sources is not None and train_sources < 1:
            raise ValueError(f"train_sources must be at least 1 (or left out for every source), got {train_sources}")
        self.train_sources = train_sources
        self.rows: dict[Path, list[dict[str, Any]]] = {}
        self._logged = False

    def corpora(self) -> list[AdversarialCorpus]:
        """Every corpus, once (the same folder may be listed for training and testing)."""
        unique: dict[Path, AdversarialCorpus] = {}
        for corpus in self.train_sets + self.test_sets:
            unique.setdefault(corpus.root.resolve(), corpus)
        return list(unique.values())

    def attack_corpora(self) -> list[AdversarialCorpus]:
        """The corpora whose attacked clips this module serves labelled adversarial: not those whose kind of clip
        ``kinds`` leaves out, nor a noise control whose noise is labelled normal."""
        return [corpus for corpus in self.corpora() if corpus.attack_kind in self.kinds
                and self.label_of(corpus.attack_kind) == ADVERSARIAL]

    def _distributed(self) -> bool:
        return self.trainer is not None and self.trainer.world_size > 1

    def prepare_data(self) -> None:
        if self._distributed():
            return  # each rank generates its own shard in setup
        for corpus in self.corpora():
            if not corpus.build():
                raise RuntimeError(f"{corpus.root}: clips are still missing after the build: {corpus.missing()[:5]}")

    def _build_sharded(self) -> None:
        trainer = self.trainer
        strategy, rank, world = trainer.strategy, trainer.global_rank, trainer.world_size
        for corpus in self.corpora():
            if rank == 0:
                corpus.start(strategy.root_device)
            strategy.barrier()
            if not corpus.is_complete():
                corpus.generate(rank, world, device=strategy.root_device)
            strategy.barrier()
            if rank == 0 and not corpus.merge():
                raise RuntimeError(f"{corpus.root}: shards finished but clips are missing: {corpus.missing()[:5]}")
            strategy.barrier()

    def corpus_rows(self, corpus: AdversarialCorpus) -> list[dict[str, Any]]:
        key = corpus.root.resolve()
        if key not in self.rows:
            if not corpus.is_complete():
                raise RuntimeError(f"{corpus.root}: the corpus is unfinished or was built with other settings; "
                                   "run prepare_data (or `lit-app generate`) first")
            self.rows[key] = manifest.read_manifest(corpus.root)
        return self.rows[key]

    def label_of(self, kind: str) -> int:
        """The detection label of a manifest row's ``kind`` of clip (``clean``, ``adversarial`` or ``noise``)."""
        if kind == "noise":
            return DETECTION_LABELS.index(self.noise_label)
        return ADVERSARIAL if kind == "adversarial" else NORMAL

    def examples(self, corpora: list[AdversarialCorpus], split: str) -> list[tuple[str, int]]:
        """``(path, label)`` of the clips served for ``split``, balanced per corpus."""
        items = []
        for index, corpus in enumerate(corpora):
            rows = [r for r in self.corpus_rows(corpus) if r["split"] == split and r["kind"] in self.kinds]
            if split == "train" and self.train_sources is not None:
                rows = first_sources(rows, self.train_sources, corpus.root)
            if not self.include_failed:
                rows = [r for r in rows if r["kind"] != "adversarial" or r["success"]]
            chosen = [(str(corpus.root / r["path"]), self.label_of(r["kind"])) for r in rows]
            if self.balance_classes:
                chosen = balance(chosen, random.Random(f"{self.seed}-{index}-{split}"))
            counts = [sum(label == c for _, label in chosen) for c in (NORMAL, ADVERSARIAL)]
            log.info("%s %s: %d normal, %d adversarial clips", corpus.root, split, *counts)
            items += chosen
        return items

    def setup(self, stage: str) -> None:
        if self._distributed() and not all(c.is_complete() for c in self.corpora()):
            self._build_sharded()
        # Every split of every corpus in use, not only those served now: a leak between training and test data
        # must stop the run before training, not at test time.
        check_leakage([row for corpus in self.corpora() for row in self.corpus_rows(corpus)])
        for split in STAGE_SPLITS[stage]:
            if split not in self.datasets:
                corpora = self.train_sets if split in ("train", "val") else self.test_sets
                items = self.examples(corpora, split)
                if not items:
                    raise RuntimeError(f"no clips for the {split} split in {[str(c.root) for c in corpora]}")
                self.datasets[split] = DetectionClipDataset(items, cache=self.cache_audio)
        if stage == "fit" and not self._logged:
            self._logged = True
            self.log_to_wandb()

    def log_to_wandb(self) -> None:
        """Results table and clean/adversarial audio pairs to every W&B logger (rank 0 only)."""
        if self.trainer is None or self.log_pairs <= 0 or not self.trainer.is_global_zero:
            return
        from pytorch_lightning.loggers import WandbLogger

        from lit_app.advsets.wandb_log import log_corpora

        for logger in self.trainer.loggers:
            if isinstance(logger, WandbLogger):
                log_corpora(logger, {c.root: self.corpus_rows(c) for c in self.corpora()}, self.log_pairs)

