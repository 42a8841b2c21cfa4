"""Detector backbones: ``[batch, frames, features]`` feature maps to 2-class logits (normal, adversarial).

Every backbone takes ``valid_frames`` (frames of each example before zero padding); the paper's CNN ignores
it, as the original did, while :class:`ResCNN` pools over valid frames only.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import nn

Backbone = Literal["paper", "rescnn"]


class UnitMaxPool2d(nn.MaxPool2d):
    """The paper CNN's MaxPool (1,1), which returns its input: it skips PyTorch's CPU kernel, which still copies the
    map through the pooling loop at nearly a fifth of a detector training step's cost."""

    def __init__(self) -> None:
        super().__init__(kernel_size=(1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x


#: frames of the zero map that gives the paper CNN's value for its padding: the fewest that pool to one frame
ZERO_WINDOW = 5


class PaperCNN(nn.Module):
    """The detector CNN of Samizade et al. (ICASSP 2020), layer by layer as in their released Keras model.

    Conv 64 2x2 ReLU -> MaxPool (1,3) -> Conv 64 2x2 ReLU -> MaxPool (1,1) -> Conv 32 2x2 SELU ->
    MaxPool 2x2 -> Flatten -> Dense 128 ReLU -> Dense 2, valid padding, pooling stride = pool size (Keras
    defaults). The (1,1) pooling is a no-op kept for fidelity. 7.13 M parameters at 698 frames x 40 MFCCs,
    nearly all in Dense 128, so the input size is fixed at construction.

    Args:
        num_frames: frames per input (698 in the paper, 31 for 512 ms blocks at a 16 ms hop).
        num_features: features per frame (40 MFCCs in the paper, 20 in the follow-up).
        num_classes: output logits.
    """

    def __init__(self, num_frames: int = 698, num_features: int = 40, num_classes: int = 2) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 64, kernel_size=2),
            nn.ReLU(),
            nn.MaxPool2d(kernel_size=(1, 3)),
            nn.Conv2d(64, 64, kernel_size=2),
            nn.ReLU(),
            UnitMaxPool2d(),
            nn.Conv2d(64, 32, kernel_size=2),
            nn.SELU(),
            nn.MaxPool2d(kernel_size=2),
        )
        with torch.no_grad():
            maps = self.features(torch.zeros(1, 1, num_frames, num_features))
        flat, self.pooled_frames = maps.numel(), maps.shape[2]
        if flat == 0:
            raise ValueError(f"input {num_frames}x{num_features} is too small for the paper CNN")
        self.classifier = nn.Sequential(nn.Linear(flat, 128), nn.ReLU(), nn.Linear(128, num_classes))

    def forward(self, features: torch.Tensor, valid_frames: torch.Tensor | None = None) -> torch.Tensor:
        return self.classifier(self.feature_maps(features.unsqueeze(1)).flatten(1))

    def feature_maps(self, x: torch.Tensor) -> torch.Tensor:
        """The convolution stack's output ``[batch, 32, frames', features']`` for ``[batch, 1, frames, features]``.

        Every pooled frame whose inputs all lie in the trailing all-zero frames (the zero padding to 698 frames,
        most of the map for a one-second clip) has the same value, so it is computed once, on a zero map of
        :data:`ZERO_WINDOW` frames, and repeated: the same numbers as the whole map, several times faster for
        short clips. Being padding, those frames get no gradient (the detector zeroes them before the CNN, so
        the gradient with respect to its audio is the whole map's).
        """
        nonzero_frames = x.ne(0).any(dim=3).any(dim=1).any(dim=0).nonzero()  # one host sync per batch
        last = int(nonzero_frames[-1]) + 1 if len(nonzero_frames) else 0
        # Three 2-frame convolutions and a 2-frame pool: pooled frame u reads input frames 2u to 2u + 4, so with
        # ``last + 4`` frames every pooled frame that reads a non-zero input is computed from the real map.
        crop = max(last + 4, ZERO_WINDOW)
        if crop >= x.shape[2]:
            return self.features(x)
        head = self.features(x[:, :, :crop])
        tail = self.features(x.new_zeros(1, 1, ZERO_WINDOW, x.shape[3]))  # [1, channels, 1, features']
        return torch.cat([head, tail.expand(x.shape[0], -1, self.pooled_frames - head.shape[2], -1)], dim=2)


def time_mask(valid_frames: torch.Tensor, frames: int) -> torch.Tensor:
    """``[batch, 1, frames, 1]`` mask of the valid frames of ``[batch, channels, frames, features]`` maps."""
    return (torch.arange(frames, device=valid_frames.device)[None, :] < valid_frames[:, None])[:, None, :, None]


class ResidualBlock(nn.Module):
    """Two 3x3 convolutions with batch norm and an identity (or 1x1) shortcut.

    Activations past each example's valid frames are zeroed after every non-linearity, so the next
    convolution sees exactly the zero padding it would see at the end of an unpadded clip.
    """

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.first = nn.Sequential(
            nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False), nn.BatchNorm2d(out_channels), nn.ReLU()
        )
        self.second = nn.Sequential(nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False), nn.BatchNorm2d(out_channels))
        self.shortcut = (
            nn.Identity()
            if in_channels == out_channels
            else nn.Sequential(nn.Conv2d(in_channels, out_channels, 1, bias=False), nn.BatchNorm2d(out_channels))
        )

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.second(self.first(x) * mask) + self.shortcut(x)) * mask


class ResCNN(nn.Module):
    """A small residual CNN with masked statistics pooling over time: the stronger backbone.

    Residual stages with 2x2 pooling keep local time-frequency detail, frequency is pooled to a few bands
    (so where in the spectrum a perturbation sits still counts), and the mean and max over *valid* frames
    make the score independent of utterance length and of zero padding (exactly so in evaluation; batch
    norm statistics in training see the padding), which the paper's Dense layer over a fixed 698-frame map
    is not.

    Args:
        num_features: features per frame.
        channels: output channels of each residual stage (each stage halves time and frequency).
        freq_bands: frequency bands kept after the convolutions.
        dropout: dropout before the classifier.
        num_classes: output logits.
    """

    def __init__(
        self,
        num_features: int = 40,
        channels: tuple[int, ...] = (32, 64, 128),
        freq_bands: int = 4,
        dropout: float = 0.2,
        num_classes: int = 2,
    ) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(1, channels[0], 3, padding=1, bias=False), nn.BatchNorm2d(channels[0]), nn.ReLU())
        widths = [channels[0], *channels]
        self.stages = nn.ModuleList(ResidualBlock(a, b) for a, b in zip(widths[:-1], widths[1:]))
        # ceil_mode: a last, partly valid cell survives; its inputs are >= 0 (post-ReLU), so the zeroed
        # padding inside it never wins the max.
        self.pool = nn.MaxPool2d(2, ceil_mode=True)
        self.freq_pool = nn.AdaptiveAvgPool2d((None, freq_bands))
        embedding = channels[-1] * freq_bands
        self.classifier = nn.Sequential(
            nn.Dropout(dropout), nn.Linear(2 * embedding, 128), nn.ReLU(), nn.Linear(128, num_classes)
        )
        self.num_features = num_features

    def forward(self, features: torch.Tensor, valid_frames: torch.Tensor | None = None) -> torch.Tensor:
        x = features.unsqueeze(1)  # [batch, 1, frames, features]
        valid = torch.full((x.shape[0],), x.shape[2], device=x.device) if valid_frames is None else valid_frames.clamp(1, x.shape[2])
        x = self.stem(x) * time_mask(valid, x.shape[2])
        for stage in self.stages:
            x = self.pool(stage(x, time_mask(valid, x.shape[2])))
            valid = -(-valid // 2)
        maps = self.freq_pool(x).permute(0, 2, 1, 3).flatten(2)  # [batch, frames', channels * bands]
        mask = time_mask(valid, maps.shape[1])[:, 0]  # [batch, frames', 1]
        mean = (maps * mask).sum(1) / valid[:, None].to(maps.dtype)
        peak = maps.masked_fill(~mask, float("-inf")).amax(1)
        return self.classifier(torch.cat([mean, peak], dim=1))


def build_backbone(name: Backbone, num_frames: int, num_features: int) -> nn.Module:
    """The backbone ``name`` for inputs of ``num_frames`` x ``num_features``."""
    if name == "paper":
        return PaperCNN(num_frames, num_features)
    if name == "rescnn":
        return ResCNN(num_features)
    raise ValueError(f"unknown backbone {name!r}; choose 'paper' or 'rescnn'")
