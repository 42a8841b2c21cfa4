"""The contract between adversarial datasets and the detector: labels and the batch format.

Every data module that serves detection data (datasets our attacks build, the paper's released sets, generic
folder or CSV layouts) yields batches made by :func:`collate_detection`:

- ``audio``: float32 ``[batch, max_samples]`` at 16 kHz, zero-padded at the end;
- ``lengths``: int64 ``[batch]``, the true number of samples of each clip;
- ``labels``: int64 ``[batch]``, ``0`` normal, ``1`` adversarial.
"""

from __future__ import annotations

from typing import NamedTuple

import torch

DETECTION_LABELS = ("normal", "adversarial")
NORMAL, ADVERSARIAL = 0, 1


class DetectionBatch(NamedTuple):
    audio: torch.Tensor
    lengths: torch.Tensor
    labels: torch.Tensor


def collate_detection(examples: list[tuple[torch.Tensor, int]]) -> DetectionBatch:
    """Pad ``(waveform, label)`` pairs (1-D float waveforms) into a :class:`DetectionBatch`."""
    lengths = torch.tensor([wave.numel() for wave, _ in examples], dtype=torch.long)
    audio = torch.zeros(len(examples), int(lengths.max()), dtype=torch.float32)
    for row, (wave, _) in enumerate(examples):
        audio[row, : wave.numel()] = wave.float()
    labels = torch.tensor([label for _, label in examples], dtype=torch.long)
    return DetectionBatch(audio, lengths, labels)
