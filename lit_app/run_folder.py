"""Where a Lightning run's own files (figures, its config, predictions) go: a folder of that run, never a shared one."""

from __future__ import annotations

from pathlib import Path

import pytorch_lightning as pl
from pytorch_lightning.loggers import CSVLogger, TensorBoardLogger


def run_folder(trainer: pl.Trainer) -> Path:
    """The run's folder: a CSV or TensorBoard logger's version folder, else the trainer's ``default_root_dir``.

    ``trainer.log_dir`` is a W&B logger's ``save_dir`` (``runs/`` in the app's preset), which every run shares, so
    a file written there by one test run is overwritten by the next run of any model.
    """
    logger = trainer.loggers[0] if trainer.loggers else None
    if isinstance(logger, (CSVLogger, TensorBoardLogger)) and trainer.log_dir:
        return Path(trainer.log_dir)
    return Path(trainer.default_root_dir)
