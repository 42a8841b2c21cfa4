"""MixStyle (Zhou et al. 2021, "Domain Generalization with MixStyle"): in training, each clip's feature maps take
on statistics mixed between its own and another clip's, so the network sees speakers between the ones it has."""

from __future__ import annotations

import torch
from torch import nn


class MixStyle(nn.Module):
    """Mix the per-channel mean and standard deviation of ``[batch, channels, height, width]`` maps across a batch.

    Early convolutional maps' channel statistics carry a recording's style (for speech: the voice's timbre and
    the channel) more than its content. With probability ``probability`` a training batch has each clip's maps
    renormalised to a convex mix of its statistics and those of a random other clip of the batch; in evaluation
    the module is the identity.

    Args:
        probability: chance that a training batch is mixed (the paper's 0.5).
        alpha: both parameters of the Beta distribution of each clip's mixing weight (the paper's 0.1: most
            weights lie near 0 or 1).
        eps: added to the variance before its square root.
    """

    def __init__(self, probability: float = 0.5, alpha: float = 0.1, eps: float = 1e-6) -> None:
        super().__init__()
        if not 0.0 <= probability <= 1.0:
            raise ValueError(f"MixStyle probability must lie in [0, 1], got {probability}")
        if alpha <= 0:
            raise ValueError(f"MixStyle alpha must be positive, got {alpha}")
        self.probability = probability
        self.beta = torch.distributions.Beta(alpha, alpha)
        self.eps = eps

    def forward(self, maps: torch.Tensor) -> torch.Tensor:
        # At probability 0 nothing is drawn, so a network with MixStyle off trains on the random stream it had before.
        if not self.training or self.probability == 0 or maps.shape[0] < 2 or torch.rand(()) >= self.probability:
            return maps
        # The statistics are treated as constants, as in the paper: the gradient flows through the content only.
        mean = maps.mean(dim=(2, 3), keepdim=True).detach()
        std = (maps.var(dim=(2, 3), keepdim=True) + self.eps).sqrt().detach()
        weight = self.beta.sample((maps.shape[0], 1, 1, 1)).to(maps)
        other = torch.randperm(maps.shape[0], device=maps.device)
        mixed_mean = weight * mean + (1 - weight) * mean[other]
        mixed_std = weight * std + (1 - weight) * std[other]
        return (maps - mean) / std * mixed_std + mixed_mean
