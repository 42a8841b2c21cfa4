"""Rebuilding a trained model from its checkpoint path alone, with errors that say what went wrong."""

from __future__ import annotations

import importlib
import os
from pathlib import Path
from typing import TypeVar

import torch

from lit_app.base import CLASS_KEY, LitAppModule

ModuleT = TypeVar("ModuleT", bound=LitAppModule)


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be used; the message names the file and the fix."""


def read_checkpoint(path: str | os.PathLike) -> dict:
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(
            f"{path}: checkpoint not found. Train the model first (`lit-app fit ...`) or fix the path."
        )
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:
        raise CheckpointError(
            f"{path}: not a readable PyTorch checkpoint ({type(err).__name__}: {err}). The file is corrupt or "
            "incomplete (was training interrupted while saving?); use another checkpoint, e.g. last.ckpt."
        ) from err
    if not isinstance(checkpoint, dict) or "state_dict" not in checkpoint:
        raise CheckpointError(f"{path}: not a Lightning checkpoint (no state_dict). Point at a .ckpt from `lit-app fit`.")
    return checkpoint


def load_module(
    path: str | os.PathLike, expected: type[ModuleT] = LitAppModule, map_location: str | torch.device = "cpu"
) -> ModuleT:
    """Rebuild the LightningModule saved in ``path``, in eval mode.

    Args:
        path: a checkpoint written by ``lit-app fit``.
        expected: the class (or a base class) the checkpoint must hold, e.g. ``KWSModule`` for a KWS victim.
        map_location: device to load the weights onto.

    Raises:
        CheckpointError: missing or unreadable file, a checkpoint of another program, or of another model.
    """
    checkpoint = read_checkpoint(path)
    class_path = checkpoint.get(CLASS_KEY)
    if not class_path:
        raise CheckpointError(f"{path}: this checkpoint was not written by lit-app (no {CLASS_KEY!r} entry).")
    module_name, _, class_name = class_path.rpartition(".")
    try:
        cls = getattr(importlib.import_module(module_name), class_name)
    except (ImportError, AttributeError) as err:
        raise CheckpointError(f"{path}: holds a {class_path}, which this version of lit-app does not have.") from err
    if not issubclass(cls, expected):
        raise CheckpointError(
            f"{path}: holds a {cls.__name__}, but a {expected.__name__} is needed here. Pass a checkpoint of a "
            f"{expected.__name__}."
        )
    model = cls.load_from_checkpoint(path, map_location=map_location, weights_only=True)
    return model.eval()
