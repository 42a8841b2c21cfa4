"""Victims: trained models seen through the few operations attacks need.

A victim is rebuilt from its checkpoint path alone (:func:`load_victim`). Two kinds exist:

- :class:`ClassifierVictim` wraps a model that maps ``[batch, samples]`` waveforms to class logits (the
  keyword spotter); targets are class names.
- :class:`CTCVictim` wraps a model that maps waveforms and their lengths to per-frame character
  log-probabilities and valid frame counts (DeepSpeech); targets are phrases, success is an exact greedy
  transcript.

Both expose the same methods, so gradient attacks work on either. Targets are encoded as tuples of tensors
indexed by example, so an attack can keep working on a shrinking subset of a batch.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from lit_app.checkpoints import load_module

Encoded = tuple[torch.Tensor, ...]

#: Clips per forward pass when a classifier only answers (no gradients) on the CPU. The keyword spotter's first
#: convolution makes 0.7 MB of activations per clip: passes of 32 keep them in the caches and answer about 3 times as
#: many clips per second as passes of 1,152 on 2 Zen 5 cores (benchmarks/kws_throughput.py). The size of a pass
#: changes no clip's answer (tests/test_attacks.py checks it).
CPU_CLIPS_PER_PASS = 32


@torch.no_grad()
def answer_in_passes(module: nn.Module, waveforms: torch.Tensor) -> torch.Tensor:
    """``module(waveforms)`` without gradients: on the CPU in passes of at most :data:`CPU_CLIPS_PER_PASS` clips,
    elsewhere in one."""
    if waveforms.device.type != "cpu" or waveforms.shape[0] <= CPU_CLIPS_PER_PASS:
        return module(waveforms)
    return torch.cat([module(part) for part in waveforms.split(CPU_CLIPS_PER_PASS)])


def checkpoint_sha256(path: str | os.PathLike) -> str:
    """Hex SHA-256 of a checkpoint file: identifies the exact victim an adversarial dataset was made against."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def select(encoded: Encoded, index: torch.Tensor) -> Encoded:
    """The encoded targets of the examples at ``index``."""
    return tuple(part[index] for part in encoded)


def _freeze(module: nn.Module, device: torch.device | str | None) -> nn.Module:
    # Attacks differentiate with respect to the input only; frozen weights skip their gradients entirely.
    module = module.eval().requires_grad_(False)
    return module.to(device) if device is not None else module


class Victim:
    """Common part of the victim kinds: the wrapped module and its device."""

    def __init__(self, module: nn.Module, device: torch.device | str | None = None) -> None:
        self.module = _freeze(module, device)

    @property
    def device(self) -> torch.device:
        parameter = next(self.module.parameters(), None)
        return parameter.device if parameter is not None else torch.device("cpu")

    def prepare(self, waveform: torch.Tensor) -> torch.Tensor:
        """A 1-D source clip in the form the victim takes (classifiers need a fixed length)."""
        return waveform

    def normalise_target(self, target: str) -> str:
        """The target as the victim's output would spell it; raises ``ValueError`` for impossible targets."""
        raise NotImplementedError

    def encode(self, targets: Sequence[str]) -> Encoded:
        raise NotImplementedError

    def loss(self, waveforms: torch.Tensor, lengths: torch.Tensor, encoded: Encoded) -> torch.Tensor:
        """Per-example loss ``[batch]`` that falls as the output approaches the target (differentiable)."""
        raise NotImplementedError

    def feasible(self, lengths: torch.Tensor, encoded: Encoded) -> torch.Tensor:
        """Which examples can reach their target at all (a CTC output needs enough frames)."""
        return torch.ones(lengths.shape[0], dtype=torch.bool, device=lengths.device)

    def predict(self, waveforms: torch.Tensor, lengths: torch.Tensor) -> list[str]:
        """The victim's output for each clip: a class name or a transcript."""
        raise NotImplementedError


class ClassifierVictim(Victim):
    """A classifier over fixed-length clips (``module(waveforms) -> logits``) with class names in ``module.labels``.

    Args:
        module: the model; it must have ``labels`` and take ``[batch, clip_samples]`` waveforms.
        device: where to run it (left where it is when ``None``).
    """

    def __init__(self, module: nn.Module, device: torch.device | str | None = None) -> None:
        super().__init__(module, device)
        self.labels: list[str] = list(module.labels)
        hparams = getattr(module, "hparams", {})
        self.clip_samples: int = int(hparams.get("clip_samples", 16000))
        self.index = {label: i for i, label in enumerate(self.labels)}

    def prepare(self, waveform: torch.Tensor) -> torch.Tensor:
        out = torch.zeros(self.clip_samples, dtype=waveform.dtype)
        clip = waveform[: self.clip_samples]
        out[: clip.numel()] = clip
        return out

    def normalise_target(self, target: str) -> str:
        if target not in self.index:
            raise ValueError(f"target {target!r} is not one of the victim's classes {self.labels}")
        return target

    def encode(self, targets: Sequence[str]) -> Encoded:
        indices = [self.index[self.normalise_target(t)] for t in targets]
        return (torch.tensor(indices, dtype=torch.long, device=self.device),)

    def fit_length(self, waveforms: torch.Tensor) -> torch.Tensor:
        """Shorter clips zero-padded, longer ones cut, as :meth:`prepare` does for a single clip."""
        extra = self.clip_samples - waveforms.shape[1]
        if extra:
            waveforms = F.pad(waveforms, (0, extra)) if extra > 0 else waveforms[:, : self.clip_samples]
        return waveforms

    def logits(self, waveforms: torch.Tensor) -> torch.Tensor:
        return self.module(self.fit_length(waveforms))

    def loss(self, waveforms: torch.Tensor, lengths: torch.Tensor, encoded: Encoded) -> torch.Tensor:
        return F.cross_entropy(self.logits(waveforms), encoded[0], reduction="none")

    def predict(self, waveforms: torch.Tensor, lengths: torch.Tensor) -> list[str]:
        logits = answer_in_passes(self.module, self.fit_length(waveforms))
        return [self.labels[i] for i in logits.argmax(-1).tolist()]


class CTCVictim(Victim):
    """A CTC speech recogniser: ``module(waveforms, lengths) -> (log_probs [batch, frames, symbols], frames)``.

    The module must also provide ``alphabet`` (with ``normalise`` and ``encode``), ``output_lengths``
    (CTC frames of clips of given sample counts) and ``transcribe`` (greedy decoding), as :class:`lit_app.models.asr.DeepSpeechModule` does.

    Args:
        module: the recogniser.
        device: where to run it (left where it is when ``None``).
    """

    def __init__(self, module: nn.Module, device: torch.device | str | None = None) -> None:
        super().__init__(module, device)
        self.alphabet = module.alphabet
        if self.device.type == "cuda":
            self._allow_cudnn_rnn_backward()

    def _allow_cudnn_rnn_backward(self) -> None:
        # cuDNN refuses the backward pass of an RNN in eval mode. Single-layer (or dropout-free) RNNs compute
        # the same function in train mode, so those are switched; anything else would change the victim.
        for rnn in (m for m in self.module.modules() if isinstance(m, nn.RNNBase)):
            if rnn.dropout > 0 and rnn.num_layers > 1:
                raise ValueError("the victim has an RNN with inter-layer dropout; attack it on the CPU or without cuDNN")
            rnn.train()

    def normalise_target(self, target: str) -> str:
        return self.alphabet.normalise(target, "attack target")

    def encode(self, targets: Sequence[str]) -> Encoded:
        encoded = [self.alphabet.encode(t, "attack target") for t in targets]
        lengths = torch.tensor([len(e) for e in encoded], dtype=torch.long)
        padded = torch.zeros(len(encoded), max(int(lengths.max()), 1), dtype=torch.long)
        for row, e in enumerate(encoded):
            padded[row, : len(e)] = e
        return padded.to(self.device), lengths.to(self.device)

    def loss(self, waveforms: torch.Tensor, lengths: torch.Tensor, encoded: Encoded) -> torch.Tensor:
        log_probs, frames = self.module(waveforms, lengths)
        targets, target_lengths = encoded
        return F.ctc_loss(log_probs.float().transpose(0, 1), targets, frames, target_lengths, blank=0,
                          reduction="none", zero_infinity=False)

    def feasible(self, lengths: torch.Tensor, encoded: Encoded) -> torch.Tensor:
        from lit_app.text import ctc_frames_needed

        targets, target_lengths = encoded
        frames = self.module.output_lengths(lengths.to(self.device))
        return ctc_frames_needed(targets, target_lengths) <= frames

    @torch.no_grad()
    def predict(self, waveforms: torch.Tensor, lengths: torch.Tensor) -> list[str]:
        return self.module.transcribe(waveforms, lengths.to(waveforms.device))


def wrap(module: nn.Module, device: torch.device | str | None = None) -> Victim:
    """The victim kind that fits ``module``: a CTC recogniser (has an ``alphabet``) or a classifier (has ``labels``)."""
    if hasattr(module, "alphabet") and hasattr(module, "transcribe"):
        return CTCVictim(module, device)
    if hasattr(module, "labels"):
        return ClassifierVictim(module, device)
    raise TypeError(f"{type(module).__name__} is neither a classifier with labels nor a CTC recogniser")


def load_victim(path: str | os.PathLike, device: torch.device | str = "cpu") -> Victim:
    """Rebuild the victim saved in checkpoint ``path`` (written by ``lit-app fit``) on ``device``.

    The file is read weights-only and must be local and name one of the app's models
    (:func:`lit_app.checkpoints.load_module`); the path goes there unaltered, so a URL is recognised and refused.
    """
    return wrap(load_module(path, map_location=device), device)
