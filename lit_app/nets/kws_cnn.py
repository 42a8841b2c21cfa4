"""The keyword-spotting CNN attacked in the paper's black-box experiments."""

from __future__ import annotations

from typing import Literal

import torch
from torch import nn


def same_padding(kernel: tuple[int, int]) -> nn.ZeroPad2d:
    """Zero padding that keeps the size for a stride-1 kernel of any (also even) size, as TF's 'SAME'."""
    (height, width) = kernel
    return nn.ZeroPad2d(((width - 1) // 2, width // 2, (height - 1) // 2, height // 2))


class CnnTradFpool3(nn.Module):
    """cnn-trad-fpool3 as in TensorFlow's speech-commands "conv" model (Sainath & Parada 2015).

    Conv 64 (20x8) -> ReLU -> MaxPool 2 -> Conv 64 (10x4) -> ReLU -> MaxPool 2 -> Linear, with dropout
    after each convolution, on ``[batch, frames, coefficients]`` features. TensorFlow pads "same"; "valid"
    padding computes about half as much (96 M instead of 210 M multiply-adds per 1 s clip).

    Args:
        num_classes: number of output classes.
        num_frames: feature frames per clip (101 for 1 s at a 10 ms hop).
        num_coefficients: features per frame (40 MFCCs).
        dropout: dropout probability after each convolution.
        padding: ``same`` (TensorFlow's model) or ``valid``.
        batch_norm: batch normalisation after each convolution (not in the original; trains much faster).
    """

    # Channels-last activations (oneDNN's native layout) give the same results faster: on 2 CPU cores the
    # whole victim trains about 1.3x and answers a large batch of queries 1.35x as fast as in the default
    # layout (benchmarks/kws_throughput.py measures both).
    memory_format = torch.channels_last

    def __init__(
        self,
        num_classes: int,
        num_frames: int = 101,
        num_coefficients: int = 40,
        dropout: float = 0.5,
        padding: Literal["same", "valid"] = "same",
        batch_norm: bool = False,
    ) -> None:
        super().__init__()
        pad = same_padding if padding == "same" else lambda kernel: nn.Identity()
        # ReLU after pooling: max-pooling commutes with ReLU and dropout's non-negative scaling, so the output
        # (and the dropout draw) equals conv -> ReLU -> dropout -> pool, with ReLU on a quarter of the elements.
        # The parameterised layers keep their indices, so checkpoints load either way.
        self.features = nn.Sequential(
            pad((20, 8)),
            nn.Conv2d(1, 64, kernel_size=(20, 8)),
            nn.BatchNorm2d(64) if batch_norm else nn.Identity(),
            nn.Dropout(dropout),
            nn.MaxPool2d(2, ceil_mode=True),
            nn.ReLU(),
            pad((10, 4)),
            nn.Conv2d(64, 64, kernel_size=(10, 4)),
            nn.BatchNorm2d(64) if batch_norm else nn.Identity(),
            nn.Dropout(dropout),
            nn.MaxPool2d(2, ceil_mode=True),
            nn.ReLU(),
        )
        with torch.no_grad():
            flat = self.features(torch.zeros(1, 1, num_frames, num_coefficients)).numel()
        self.classifier = nn.Linear(flat, num_classes)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """Map ``[batch, frames, coefficients]`` features to ``[batch, num_classes]`` logits."""
        images = features.unsqueeze(1).contiguous(memory_format=self.memory_format)
        return self.classifier(self.features(images).flatten(1))
