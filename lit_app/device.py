"""Where a job that is not run by a Lightning Trainer (attacks, scoring, experiments) puts its tensors."""

from __future__ import annotations

import torch


def resolve_device(device: str | torch.device) -> torch.device:
    """``auto`` is CUDA when available, else the CPU; anything else is taken as a torch device name."""
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)
