"""LightningDataModule for keyword spotting on a real or synthetic Speech Commands corpus."""

from __future__ import annotations

import logging
import random
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader, TensorDataset

from lit_app.audio.augment import TimeShiftAndNoise
from lit_app.audio.io import AudioPolicy
from lit_app.audio.pcm import pcm16_to_float
from lit_app.audio.voice_augment import VoiceAugment
from lit_app.base import LitAppDataModule
from lit_app.data import speech_commands as sc
from lit_app.data.source_clip import SourceClip
from lit_app.data.synth.keywords import SyntheticKeywordCorpus
from lit_app.data.vocab import SILENCE, UNKNOWN, Task, task_labels
from lit_app.splits import FROM_SPEECH_COMMANDS, SPEECH_COMMANDS_SPLITS, SPEECH_COMMANDS_STAGE_SPLITS, SPLITS

log = logging.getLogger(__name__)


class KWSDataModule(LitAppDataModule):
    """Speech Commands keyword spotting: 1 s clips at 16 kHz as int16 batches, labels as class indices.

    Clips are checked and loaded into memory once (a bad file stops the run with its name, or is skipped
    and reported with ``skip_bad_files``). Training batches get time-shift and background-noise
    augmentation on the device, and with ``voice_augment`` speed, colour, room and codec changes first.

    Args:
        root: corpus folder in the Speech Commands layout.
        task: ``keywords12`` (10 keywords, silence, unknown) or ``words35``.
        synthesize: when given, build this synthetic corpus in ``root`` if it is missing or unfinished.
        batch_size: clips per batch.
        silence_percentage: silence clips per split, in percent of that split's keyword clips.
        unknown_percentage: unknown-word clips per split, in percent of that split's keyword clips.
        augment: time shift and background noise on training batches.
        voice_augment: speed, spectral colour, room and codec perturbation of training batches (before the time
            shift and noise), so that a victim trained on a few engines hears more voices; none by default.
        max_shift_ms: largest time shift in milliseconds.
        noise_probability: share of training clips that get background noise.
        snr_db_range: signal-to-noise ratio range of that noise, dB.
        skip_bad_files: skip (and list) unreadable or invalid clips instead of stopping.
        seed: seed for the silence/unknown selection.
        num_workers: DataLoader worker processes (clips are in memory, so 0 is usually fastest).
    """

    split_names = dict(zip(SPLITS, SPEECH_COMMANDS_SPLITS))

    def __init__(
        self,
        root: str = "data/synthetic_keywords",
        task: Task = "keywords12",
        synthesize: SyntheticKeywordCorpus | None = None,
        batch_size: int = 128,
        silence_percentage: float = 10.0,
        unknown_percentage: float = 10.0,
        augment: bool = True,
        voice_augment: VoiceAugment | None = None,
        max_shift_ms: float = 100.0,
        noise_probability: float = 0.8,
        snr_db_range: tuple[float, float] = (5.0, 30.0),
        skip_bad_files: bool = False,
        seed: int = 0,
        num_workers: int = 0,
    ) -> None:
        super().__init__()
        self.root = Path(root)
        self.task = task
        self.synthesize = synthesize
        self.batch_size = batch_size
        self.silence_percentage = silence_percentage
        self.unknown_percentage = unknown_percentage
        self.skip_bad_files = skip_bad_files
        self.seed = seed
        self.num_workers = num_workers
        self.labels = task_labels(task)
        self.policy = AudioPolicy()
        self.augmenter = TimeShiftAndNoise(int(max_shift_ms * 16), noise_probability, snr_db_range) if augment else None
        self.voice_augment = voice_augment if augment else None
        self.datasets: dict[str, TensorDataset] = {}
        self.paths: dict[str, list[str]] = {}
        self.skipped: list[str] = []

    def prepare_data(self) -> None:
        if self.synthesize is not None:
            self.synthesize.build(self.root)

    def setup(self, stage: str) -> None:
        wanted = [split for split in SPEECH_COMMANDS_STAGE_SPLITS[stage] if split not in self.datasets]
        if not wanted:
            return
        clips = sc.scan(self.root)
        noises = sc.load_background_noise(self.root, self.policy)
        if self.augmenter is not None:
            self.augmenter.set_noise(noises)
        for split in wanted:
            rng = random.Random(f"{self.seed}-{split}")
            chosen = sc.select_for_task(clips[split], self.task, self.unknown_percentage, rng)
            audio, kept, skipped = sc.load_clips(self.root, [c for c, _ in chosen], self.policy, self.skip_bad_files)
            if skipped:
                log.warning("skipped %d bad clips in %s:\n  %s", len(skipped), self.root, "\n  ".join(skipped))
                self.skipped += skipped
            targets = [chosen[i][1] for i in kept]
            self.paths[split] = [chosen[i][0].path for i in kept]
            if self.task == "keywords12":
                count = round(len(targets) * self.silence_percentage / 100)
                audio = torch.cat([audio, sc.silence_clips(noises, count, rng)])
                targets += [self.labels.index(SILENCE)] * count
                self.paths[split] += [f"{SILENCE}/{i}" for i in range(count)]
            if not targets:
                raise RuntimeError(f"{self.root}: the {split} split has no clips for task {self.task!r}")
            self.datasets[split] = TensorDataset(audio, torch.tensor(targets))

    def attack_sources(self) -> list[SourceClip]:
        """Every keyword clip (not ``_unknown_`` words nor silence), in the split its list files give it."""
        keywords = {label for label in self.labels if label not in (SILENCE, UNKNOWN)}
        return [
            SourceClip(id=clip.path.removesuffix(".wav"), path=str(self.root / clip.path),
                       split=FROM_SPEECH_COMMANDS[split], source_split=split, label=clip.word,
                       group=clip.speaker, num_samples=sc.CLIP_SAMPLES)
            for split, listed in sc.scan(self.root).items() for clip in listed if clip.word in keywords
        ]

    def _loader(self, split: str, shuffle: bool) -> DataLoader:
        return DataLoader(
            self.datasets[split],
            batch_size=self.batch_size,
            shuffle=shuffle,
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
        )

    def waveforms(self, audio: torch.Tensor, augment: bool) -> torch.Tensor:
        """Float waveforms in [-1, 1] of an int16 batch, augmented when ``augment`` (and augmentation is on)."""
        audio = pcm16_to_float(audio)
        if augment and self.voice_augment is not None:
            audio = self.voice_augment.to(audio.device)(audio)
        if augment and self.augmenter is not None:
            audio = self.augmenter.to(audio.device)(audio)
        return audio

    def on_after_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        audio, targets = batch
        return self.waveforms(audio, augment=self.trainer is not None and self.trainer.training), targets
