"""A residual keyword-spotting network: res8 of Tang & Lin (2018), "Deep Residual Learning for Small-Footprint
Keyword Spotting" (ours as a victim option; the paper attacks TensorFlow's conv model, ``kws_cnn.py``)."""

from __future__ import annotations

import torch
from torch import nn

from lit_app.nets.mixstyle import MixStyle


class ResidualBlock(nn.Module):
    """Two 3x3 convolutions, each followed by ReLU and batch norm (the paper's order), and the identity around them."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.layers = nn.Sequential(
            nn.Conv2d(channels, channels, 3, padding=1, bias=False), nn.ReLU(), nn.BatchNorm2d(channels, affine=False),
            nn.Conv2d(channels, channels, 3, padding=1, bias=False), nn.ReLU(), nn.BatchNorm2d(channels, affine=False),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.layers(x)


class Res8(nn.Module):
    """res8: a 3x3 convolution, a 4x3 average pool, three residual blocks, the average over time and frequency, and
    a linear layer (about 110k parameters at 45 channels, against 927k for TensorFlow's conv model).

    The average over the whole map makes the answer the same wherever in the clip the word is, which TensorFlow's
    model, whose linear layer sees every position, has to learn.

    Args:
        num_classes: number of output classes.
        channels: feature maps of every convolution (45 in the paper).
        blocks: residual blocks (3 in res8).
        mixstyle_probability: chance that a training batch goes through MixStyle after the stem and after the first
            block (0: never; not in Tang & Lin).
    """

    memory_format = torch.channels_last

    def __init__(self, num_classes: int, channels: int = 45, blocks: int = 3, mixstyle_probability: float = 0.0) -> None:
        super().__init__()
        # Without weights of its own, so checkpoints keep their keys either way.
        self.mixstyle = MixStyle(mixstyle_probability)
        self.stem = nn.Sequential(nn.Conv2d(1, channels, 3, padding=1, bias=False), nn.ReLU(),
                                  nn.AvgPool2d((4, 3)))
        self.blocks = nn.Sequential(*(ResidualBlock(channels) for _ in range(blocks)))
        self.classifier = nn.Linear(channels, num_classes)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """Map ``[batch, frames, coefficients]`` features to ``[batch, num_classes]`` logits."""
        images = features.unsqueeze(1).contiguous(memory_format=self.memory_format)
        maps = self.stem(images)
        for index, block in enumerate(self.blocks):
            maps = block(self.mixstyle(maps) if index < 2 else maps)  # after the stem and after the first block
        return self.classifier(maps.mean(dim=(2, 3)))
