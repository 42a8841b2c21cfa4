"""Writes the metrics of validate and test runs to a JSON file, for scripts and result tables."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytorch_lightning as pl
from pytorch_lightning.callbacks import Callback


class ResultsFile(Callback):
    """After ``validate`` or ``test``, write every logged metric and the checkpoint used to ``path``.

    Args:
        path: JSON file to write; its folder is created. ``None``: ``results.json`` in the trainer's
            ``default_root_dir``, so that a run moved with ``--trainer.default_root_dir`` takes its results along.
    """

    def __init__(self, path: str | None = None) -> None:
        self.path = None if path is None else Path(path)

    def _write(self, trainer: pl.Trainer, stage: str) -> None:
        if not trainer.is_global_zero:
            return
        path = self.path or Path(trainer.default_root_dir) / "results.json"
        payload = {
            "stage": stage,
            "ckpt_path": trainer.ckpt_path,
            "metrics": {k: float(v) for k, v in trainer.callback_metrics.items() if v.numel() == 1},
        }
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.part")
        tmp.write_text(json.dumps(payload, indent=2, sort_keys=True) + "\n")
        os.replace(tmp, path)

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.state.fn == "validate":
            self._write(trainer, "validate")

    def on_test_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._write(trainer, "test")
