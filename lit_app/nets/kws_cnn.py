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

    By default exactly TensorFlow's ``create_conv_model``: Conv 64 (20x8, same) -> ReLU -> dropout ->
    MaxPool 2x2 (stride 2) -> Conv 64 (10x4, same) -> ReLU -> dropout -> Linear, on
    ``[batch, frames, coefficients]`` features (98 x 40 MFCCs: 926,860 parameters). Three departures are
    options, all off by default (their measured effect: ``docs/departures.md``):

    - ``padding="valid"`` computes about half as much (98 M instead of 201 M multiply-adds per 1 s clip);
    - ``batch_norm`` after each convolution trains in far fewer steps;
    - ``second_pool``, a 2x2 max-pool after the second convolution as well (the paper's name and some ports
      have it; TensorFlow's model does not), quarters the linear layer.

    Args:
        num_classes: number of output classes.
        num_frames: feature frames per clip (98 for 1 s at 30 ms / 10 ms with TensorFlow's framing).
        num_coefficients: features per frame (40 MFCCs).
        dropout: dropout probability after each convolution.
        padding: ``same`` (TensorFlow's model) or ``valid``.
        batch_norm: batch normalisation after each convolution (not in the original).
        second_pool: a 2x2 max-pool after the second convolution too (not in TensorFlow's model).
    """

    # Channels-last activations (oneDNN's native layout) give the same results faster: on 2 CPU cores the
    # whole victim trains about 1.3x and answers a large batch of queries 1.35x as fast as in the default
    # layout (benchmarks/kws_throughput.py measures both).
    memory_format = torch.channels_last

    def __init__(
        self,
        num_classes: int,
        num_frames: int = 98,
        num_coefficients: int = 40,
        dropout: float = 0.5,
        padding: Literal["same", "valid"] = "same",
        batch_norm: bool = False,
        second_pool: bool = False,
    ) -> None:
        super().__init__()
        if padding not in ("same", "valid"):
            raise ValueError(f"padding must be 'same' or 'valid', got {padding!r}")
        pad = same_padding if padding == "same" else lambda kernel: nn.Identity()
        # ReLU after pooling: max-pooling commutes with ReLU and dropout's non-negative scaling, so the output
        # (and the dropout draw) equals conv -> ReLU -> dropout -> pool, with ReLU on a quarter of the elements.
        # Absent options are Identity placeholders, so the parameterised layers keep their indices and
        # checkpoints of every variant load the same way. A 2x2 pool of stride 2 with ceil_mode is
        # TensorFlow's "SAME" max-pool.
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
            nn.MaxPool2d(2, ceil_mode=True) if second_pool else nn.Identity(),
            nn.ReLU(),
        )
        with torch.no_grad():
            flat = self.features(torch.zeros(1, 1, num_frames, num_coefficients)).numel()
        self.classifier = nn.Linear(flat, num_classes)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """Map ``[batch, frames, coefficients]`` features to ``[batch, num_classes]`` logits."""
        images = features.unsqueeze(1).contiguous(memory_format=self.memory_format)
        return self.classifier(self.features(images).flatten(1))
