"""The contract between adversarial datasets and the detector: labels and the batch format.

Every data module that serves detection data (datasets our attacks build, the paper's released sets, generic
folder or CSV layouts) yields batches made by :func:`collate_detection`:

- ``audio``: float32 ``[batch, max_samples]`` at 16 kHz, zero-padded at the end;
- ``lengths``: int64 ``[batch]``, the true number of samples of each clip;
- ``labels``: int64 ``[batch]``, ``0`` normal, ``1`` adversarial.

The detection data modules derive from :class:`DetectionDataModule` (their loaders), serve their clips through
:class:`DetectionClipDataset` and even out the classes with :func:`balance`.
"""

from __future__ import annotations

import os
import random
from collections.abc import Callable, Sequence
from operator import itemgetter
from typing import Any, NamedTuple, TypeVar

import numpy as np
import torch
from torch.nn.utils.rnn import pad_sequence
from torch.utils.data import DataLoader, Dataset

from lit_app.audio.io import STRICT, AudioError, AudioPolicy, read_audio
from lit_app.audio.pcm import pcm16_to_float, to_pcm16
from lit_app.base import LitAppDataModule

ItemT = TypeVar("ItemT")

DETECTION_LABELS = ("normal", "adversarial")
NORMAL, ADVERSARIAL = 0, 1


class DetectionBatch(NamedTuple):
    audio: torch.Tensor
    lengths: torch.Tensor
    labels: torch.Tensor


def collate_detection(examples: list[tuple[torch.Tensor, int]]) -> DetectionBatch:
    """Pad ``(waveform, label)`` pairs (1-D float waveforms) into a :class:`DetectionBatch`."""
    lengths = torch.tensor([wave.numel() for wave, _ in examples], dtype=torch.long)
    audio = pad_sequence([wave.float() for wave, _ in examples], batch_first=True)
    labels = torch.tensor([label for _, label in examples], dtype=torch.long)
    return DetectionBatch(audio, lengths, labels)


class DetectionDataModule(LitAppDataModule):
    """A data module serving detection batches: subclasses fill ``datasets`` (one per split) in ``setup``; the
    loaders batch them with :func:`collate_detection`."""

    def __init__(self, batch_size: int, num_workers: int) -> None:
        super().__init__()
        self.batch_size = batch_size
        self.num_workers = num_workers
        self.labels = list(DETECTION_LABELS)
        self.datasets: dict[str, Dataset] = {}

    def _loader(self, split: str, shuffle: bool) -> DataLoader:
        return DataLoader(self.datasets[split], batch_size=self.batch_size, shuffle=shuffle,
                          collate_fn=collate_detection, num_workers=self.num_workers,
                          persistent_workers=self.num_workers > 0)


def balance(items: Sequence[ItemT], rng: random.Random, label_of: Callable[[ItemT], int] = itemgetter(1)) -> list[ItemT]:
    """Keep a random subset of the larger class as large as the smaller one (order otherwise unchanged).

    Args:
        items: the clips, e.g. ``(path, label)`` pairs.
        rng: draws the kept clips: a random sample of each class's positions, normal first.
        label_of: a clip's label (``0`` normal, ``1`` adversarial).
    """
    normal = [i for i, item in enumerate(items) if label_of(item) == NORMAL]
    adversarial = [i for i, item in enumerate(items) if label_of(item) == ADVERSARIAL]
    size = min(len(normal), len(adversarial))
    if size == 0:
        return list(items)
    keep = set(rng.sample(normal, size)) | set(rng.sample(adversarial, size))
    return [item for i, item in enumerate(items) if i in keep]


class DetectionClipDataset(Dataset):
    """``(waveform, label)`` pairs of audio files, read with ``policy``: strict by default, since resampling or
    downmixing would change the perturbation a detector is meant to find.

    Args:
        items: ``(path, label)`` pairs.
        policy: audio policy.
        max_samples: crop longer clips to their first ``max_samples`` samples (a setting the user chose).
        cache: read every clip once, here, and keep it as int16 (16-bit clips come back bit for bit); this also
            finds bad files before training starts. Otherwise each access reads the file.
        skip_bad_files: drop unreadable or invalid clips (their messages in :attr:`skipped`) instead of stopping.
    """

    def __init__(self, items: Sequence[tuple[str | os.PathLike, int]], policy: AudioPolicy = STRICT,
                 max_samples: int | None = None, cache: bool = False, skip_bad_files: bool = False) -> None:
        self.policy = policy
        self.max_samples = max_samples
        self.items = list(items)
        self.skipped: list[str] = []
        self.cached: list[np.ndarray] | None = None
        if cache or skip_bad_files:
            kept, audio = [], []
            for item in self.items:
                try:
                    wave = self._read(item[0])
                except AudioError as err:
                    if not skip_bad_files:
                        raise
                    self.skipped.append(str(err))
                    continue
                kept.append(item)
                audio.append(to_pcm16(wave) if cache else None)
            self.items = kept
            self.cached = audio if cache else None

    def _read(self, path: Any) -> torch.Tensor:
        wave = read_audio(path, self.policy)
        return wave[: self.max_samples] if self.max_samples else wave

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        path, label = self.items[index]
        if self.cached is not None:
            return pcm16_to_float(self.cached[index]), label
        return self._read(path), label

    @property
    def labels(self) -> list[int]:
        return [label for _, label in self.items]
