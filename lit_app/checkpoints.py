"""Rebuilding a trained model from its checkpoint path alone, with errors that say what went wrong.

Checkpoints are untrusted input: they are read with ``weights_only=True`` (a pickled object other than
tensors and plain containers is refused, never run), only from local files (a URL is refused: the app
downloads nothing, and Lightning would unpickle remote files in full), and the model class a checkpoint
names must be one of :data:`MODEL_CLASSES`, checked as text before anything is imported.
"""

from __future__ import annotations

import importlib
import os
import pickle
import re
from pathlib import Path
from typing import TypeVar

import torch

from lit_app.base import CLASS_KEY, LitAppModule

ModuleT = TypeVar("ModuleT", bound=LitAppModule)

#: Every model class a checkpoint may name. A name outside this list is refused before any import, so a
#: checkpoint cannot make the app import (and run the top level of) an arbitrary module.
MODEL_CLASSES = (
    "lit_app.models.kws.KWSModule",
    "lit_app.models.asr.DeepSpeechModule",
    "lit_app.models.detector.DetectorModule",
)
_URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]+://")


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be used; the message names the file and the fix."""


def refuse_remote(path: str | os.PathLike) -> Path:
    """``path`` as a local path; a URL (``http://``, ``s3://``, ``file://``...) is refused.

    Raises:
        CheckpointError: ``path`` is a URL.
    """
    if _URL.match(str(path)):
        raise CheckpointError(
            f"{path}: lit-app loads checkpoints from local files only (it downloads nothing, and a remote file "
            "could carry code). Download the file yourself, check where it comes from, and pass its local path."
        )
    return Path(path)


def read_checkpoint(path: str | os.PathLike) -> dict:
    """The checkpoint at local ``path``, loaded weights-only.

    Raises:
        CheckpointError: a URL, a missing file, pickled objects other than weights, or not a checkpoint.
    """
    path = refuse_remote(path)
    if not path.is_file():
        raise CheckpointError(
            f"{path}: checkpoint not found. Train the model first (`lit-app fit ...`) or fix the path."
        )
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        if "unsupported global" not in str(err).lower():  # a stream of bytes that is no pickle at all
            raise CheckpointError(
                f"{path}: not a readable PyTorch checkpoint (the data is not a valid weights-only pickle). The file "
                "is corrupt or incomplete (was training interrupted while saving?); use another checkpoint, e.g. "
                "last.ckpt."
            ) from err
        # The pickle asks to import a function or class: that is how a pickle runs code.
        raise CheckpointError(
            f"{path}: holds pickled Python objects besides weights, which could run code; refused. lit-app reads "
            "weights only: use a checkpoint written by `lit-app fit`, from a source you trust."
        ) from err
    except Exception as err:
        raise CheckpointError(
            f"{path}: not a readable PyTorch checkpoint ({type(err).__name__}: {err}). The file is corrupt or "
            "incomplete (was training interrupted while saving?); use another checkpoint, e.g. last.ckpt."
        ) from err
    if not isinstance(checkpoint, dict) or "state_dict" not in checkpoint:
        raise CheckpointError(f"{path}: not a Lightning checkpoint (no state_dict). Point at a .ckpt from `lit-app fit`.")
    return checkpoint


def model_class_of(checkpoint: dict, path: str | os.PathLike) -> type[LitAppModule]:
    """The model class ``checkpoint`` names, imported only if it is one of :data:`MODEL_CLASSES`.

    Raises:
        CheckpointError: no class named, or a class outside the app.
    """
    class_path = checkpoint.get(CLASS_KEY)
    if not class_path:
        raise CheckpointError(f"{path}: this checkpoint was not written by lit-app (no {CLASS_KEY!r} entry).")
    if class_path not in MODEL_CLASSES:
        raise CheckpointError(
            f"{path}: names the model class {str(class_path)[:200]!r}, which is not one of lit-app's models "
            f"{list(MODEL_CLASSES)}; refused without importing it. Use a checkpoint written by `lit-app fit`."
        )
    module_name, _, class_name = class_path.rpartition(".")
    return getattr(importlib.import_module(module_name), class_name)


def load_module(
    path: str | os.PathLike, expected: type[ModuleT] = LitAppModule, map_location: str | torch.device = "cpu"
) -> ModuleT:
    """Rebuild the LightningModule saved in ``path``, in eval mode.

    Args:
        path: a checkpoint written by ``lit-app fit`` (a local file).
        expected: the class (or a base class) the checkpoint must hold, e.g. ``KWSModule`` for a KWS victim.
        map_location: device to load the weights onto.

    Raises:
        CheckpointError: a URL, a missing or unreadable file, pickled code, a checkpoint of another program,
            or of another model.
    """
    checkpoint = read_checkpoint(path)
    cls = model_class_of(checkpoint, path)
    if not issubclass(cls, expected):
        raise CheckpointError(
            f"{path}: holds a {cls.__name__}, but a {expected.__name__} is needed here. Pass a checkpoint of a "
            f"{expected.__name__}."
        )
    saved = checkpoint.get("hyper_parameters") or {}
    missing = {key: value for key, value in cls.legacy_hparams.items() if key not in saved}
    model = cls.load_from_checkpoint(path, map_location=map_location, weights_only=True, **missing)
    return model.eval()
