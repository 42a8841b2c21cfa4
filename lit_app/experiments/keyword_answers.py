"""A keyword victim's answers on a corpus's keyword clips, each clip with its voice.

What per-voice and per-engine scores are made of: ``engine-transfer``'s heard-engine column,
``benchmarks/kws_per_voice.py`` and ``benchmarks/kws_held_out_probes.py``. Keywords only (not ``_unknown_`` or
``_silence_``): a held-out engine's test corpus has no other words.
"""

from __future__ import annotations

import csv
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torchmetrics.functional.classification import multiclass_accuracy

from lit_app.audio.io import AudioPolicy
from lit_app.audio.pcm import pcm16_to_float
from lit_app.data.speech_commands import Clip, load_clips, scan
from lit_app.data.vocab import SILENCE, UNKNOWN


@dataclass
class KeywordClips:
    """The readable keyword clips of one split: waveforms ``[n, samples]`` in [-1, 1], label indices, voices."""

    clips: list[Clip]
    waveforms: torch.Tensor
    target: torch.Tensor
    voices: list[str]
    skipped: list[str]  # messages for the clips that could not be read


def keyword_clips(root: Path, labels: list[str], split: str = "testing") -> KeywordClips:
    """The keyword clips of ``split`` of a Speech Commands folder (synthetic or real), for a victim of ``labels``.

    Raises:
        ValueError: the split has no keyword clips.
    """
    index = {label: i for i, label in enumerate(labels)}
    clips = [clip for clip in scan(root)[split] if clip.word in index and clip.word not in (UNKNOWN, SILENCE)]
    if not clips:
        raise ValueError(f"{root}: no keyword clips in its {split} split")
    audio, kept, skipped = load_clips(root, clips, AudioPolicy(), skip_bad=True)
    clips = [clips[i] for i in kept]
    return KeywordClips(clips, pcm16_to_float(audio), torch.tensor([index[clip.word] for clip in clips]),
                        voices_of(root, clips), skipped)


def voices_of(root: Path, clips: list[Clip]) -> list[str]:
    """Each clip's voice: the synthetic manifest's (``<engine>:<name>``), or the Speech Commands speaker id."""
    manifest = root / "manifest.csv"
    if manifest.is_file():
        with open(manifest, newline="") as handle:
            voice = {row["path"]: row["voice"] for row in csv.DictReader(handle)}
        return [voice.get(clip.path, clip.speaker) for clip in clips]
    return [clip.speaker for clip in clips]


@torch.no_grad()
def in_batches(model: Callable[[torch.Tensor], torch.Tensor], waveforms: torch.Tensor,
               batch_size: int = 256) -> torch.Tensor:
    """``model``'s outputs on ``waveforms``, ``batch_size`` clips at a time, concatenated."""
    return torch.cat([model(waveforms[start : start + batch_size]) for start in range(0, len(waveforms), batch_size)])


def mean_keyword_accuracy(answer: torch.Tensor, target: torch.Tensor, num_labels: int) -> float:
    """The share of keywords recognised: accuracy per label, averaged over the labels ``target`` holds (as
    :func:`lit_app.experiments.engine_transfer.keyword_accuracy` averages a test's per-label metrics)."""
    per_label = multiclass_accuracy(answer, target, num_labels, average=None)
    return float(per_label[target.unique()].mean())
