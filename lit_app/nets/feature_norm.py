"""Feature standardisation that ignores the zero padding of variable-length batches."""

from __future__ import annotations

from typing import Literal

import torch
from torch import nn

FeatureNorm = Literal["none", "instance", "global"]


def frame_mask(valid_frames: torch.Tensor, num_frames: int) -> torch.Tensor:
    """``[batch, 1, frames]`` boolean mask of the frames before each example's padding."""
    return (torch.arange(num_frames, device=valid_frames.device)[None, :] < valid_frames[:, None]).unsqueeze(1)


def standardise_per_clip(
    features: torch.Tensor,
    valid_frames: torch.Tensor | None,
    frames_dim: int = -1,
    variance: bool = True,
    eps: float = 1e-5,
) -> torch.Tensor:
    """Each clip's features minus its own mean (and over its own standard deviation) per feature, over its valid
    frames only; padding frames become zero (cepstral mean and variance normalisation).

    Args:
        features: ``[batch, ..., frames, ...]`` maps, frames along ``frames_dim`` (1 or 2 of a 3-d tensor).
        valid_frames: ``[batch]`` frames before each clip's padding; ``None``: every frame is valid.
        frames_dim: the frames' dimension.
        variance: divide by the standard deviation too (biased, with ``eps`` added to the variance).
        eps: variance floor.
    """
    if valid_frames is None:
        mean = features.mean(frames_dim, keepdim=True)
        if not variance:
            return features - mean
        return (features - mean) / torch.sqrt(features.var(frames_dim, unbiased=False, keepdim=True) + eps)
    mask = frame_mask(valid_frames, features.shape[frames_dim])  # [batch, 1, frames]
    if frames_dim % features.dim() == 1:
        mask = mask.transpose(1, 2)
    count = mask.sum(frames_dim, keepdim=True).clamp(min=1)
    mean = (features * mask).sum(frames_dim, keepdim=True) / count
    if not variance:
        return (features - mean) * mask
    var = ((features - mean) ** 2 * mask).sum(frames_dim, keepdim=True) / count
    return (features - mean) / torch.sqrt(var + eps) * mask


class MaskedFeatureNorm(nn.Module):
    """Standardise each feature of ``[batch, features, frames]`` maps over valid frames only.

    ``global`` standardises with the mean and variance of every valid training frame seen so far, pooled
    exactly (Chan et al.'s parallel update) rather than by an exponential average: the front-end has no
    weights, so these statistics are stationary, and training and evaluation see the same normalisation
    from the first batch on. ``instance`` standardises each example with its own statistics (cepstral mean
    and variance normalisation); ``none`` passes features through. Padding frames are set to zero (the
    mean) in every mode, as the paper zero-pads its feature maps.

    Args:
        num_features: features per frame.
        mode: ``global``, ``instance`` or ``none``.
        eps: variance floor.
    """

    def __init__(self, num_features: int, mode: FeatureNorm = "global", eps: float = 1e-5) -> None:
        super().__init__()
        if mode not in ("none", "instance", "global"):
            raise ValueError(f"unknown feature_norm {mode!r}; choose 'none', 'instance' or 'global'")
        self.mode = mode
        self.eps = eps
        self.register_buffer("running_mean", torch.zeros(num_features, dtype=torch.float64))
        self.register_buffer("running_var", torch.ones(num_features, dtype=torch.float64))
        self.register_buffer("frames_seen", torch.zeros((), dtype=torch.float64))

    @torch.no_grad()
    def update(self, features: torch.Tensor, mask: torch.Tensor) -> None:
        """Pool the valid frames of a batch into the running statistics."""
        features, mask = features.double(), mask.double()
        count = mask.sum() * 1.0
        if count == 0:
            return
        mean = (features * mask).sum((0, 2)) / count
        squares = ((features - mean[None, :, None]) ** 2 * mask).sum((0, 2))
        seen = self.frames_seen
        total = seen + count
        delta = mean - self.running_mean
        pooled_squares = self.running_var * seen + squares + delta**2 * seen * count / total
        self.running_mean += delta * count / total
        self.running_var.copy_(pooled_squares / total)
        self.frames_seen.copy_(total)

    def forward(self, features: torch.Tensor, valid_frames: torch.Tensor) -> torch.Tensor:
        if self.mode == "instance":
            return standardise_per_clip(features, valid_frames, eps=self.eps)
        mask = frame_mask(valid_frames, features.shape[-1]).to(features.dtype)
        if self.mode == "none":
            return features * mask
        if self.training:
            self.update(features.detach(), mask)
        mean = self.running_mean.to(features.dtype)[None, :, None]
        std = torch.sqrt(self.running_var.to(features.dtype) + self.eps)[None, :, None]
        return (features - mean) / std * mask
