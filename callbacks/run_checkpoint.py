"""A ModelCheckpoint that keeps its checkpoints in the run's folder, wherever ``--trainer.default_root_dir`` puts it."""

from __future__ import annotations

import os
from typing import Any

import pytorch_lightning as pl
from pytorch_lightning.callbacks import ModelCheckpoint


class RunCheckpoint(ModelCheckpoint):
    """Lightning's ``ModelCheckpoint``, writing to ``<trainer.default_root_dir>/checkpoints`` unless ``dirpath`` is given.

    Lightning's own default follows the logger (``runs/csv/lit-app/version_3/checkpoints``), which scripts cannot
    find, and a fixed ``dirpath`` in a config stays put when a user moves the run with
    ``--trainer.default_root_dir``, so a second run would overwrite the first one's ``best.ckpt``.

    Args:
        dirpath: folder of the checkpoints; ``None``: ``checkpoints`` in the trainer's ``default_root_dir``.
        **kwargs: the rest of ``ModelCheckpoint``'s arguments (``filename``, ``monitor``, ``mode``, ``save_last``...).
    """

    def __init__(self, dirpath: str | None = None, **kwargs: Any) -> None:
        super().__init__(dirpath=dirpath, **kwargs)
        self._in_run_folder = dirpath is None

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if self._in_run_folder:
            self.dirpath = os.path.realpath(os.path.join(trainer.default_root_dir, "checkpoints"))
        super().setup(trainer, pl_module, stage)

    @property
    def state_key(self) -> str:
        # ModelCheckpoint's key, so that a run resumed from a checkpoint written before this class keeps its best score
        return super().state_key.replace(type(self).__qualname__, ModelCheckpoint.__qualname__, 1)
