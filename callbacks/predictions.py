"""Writes what ``lit-app predict`` predicts to a CSV: labels, transcripts or detection scores, one row per clip."""

from __future__ import annotations

import bisect
import csv
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import BasePredictionWriter
from pytorch_lightning.utilities import rank_zero_info

from lit_app.run_folder import run_folder

COLUMNS = ["index", "path", "prediction", "score"]


def clip_path(dataset: Any, index: int) -> str:
    """The file of clip ``index`` when the dataset names its files (detection sets do), else ``""``."""
    if hasattr(dataset, "cumulative_sizes"):  # a ConcatDataset: find the part that holds the clip
        part = bisect.bisect_right(dataset.cumulative_sizes, index)
        return clip_path(dataset.datasets[part], index - (dataset.cumulative_sizes[part - 1] if part else 0))
    items = getattr(dataset, "items", None)  # (path, label) pairs
    if items is not None:
        return str(items[index][0])
    clips = getattr(dataset, "clips", None)  # clips with a .path
    if clips is not None:
        return str(getattr(clips[index], "path", ""))
    return ""


def prediction_rows(pl_module: pl.LightningModule, prediction: Any) -> list[tuple[str, str]]:
    """``(prediction, score)`` per clip of a batch: a transcript; a class and its probability; a detection
    decision (``adversarial``/``normal`` at the detector's threshold) and its score."""
    if isinstance(prediction, (list, tuple)) and all(isinstance(p, str) for p in prediction):
        return [(text, "") for text in prediction]
    if isinstance(prediction, torch.Tensor) and prediction.ndim == 2:  # class probabilities
        labels = getattr(pl_module, "labels", None) or [str(i) for i in range(prediction.shape[1])]
        probability, index = prediction.float().max(1)
        return [(labels[i], f"{p:.6f}") for i, p in zip(index.tolist(), probability.tolist())]
    if isinstance(prediction, torch.Tensor) and prediction.ndim == 1:  # detection scores
        threshold = float(getattr(pl_module, "threshold", 0.5))
        return [("adversarial" if s >= threshold else "normal", f"{s:.6f}") for s in prediction.float().tolist()]
    raise TypeError(f"PredictionsFile cannot write a {type(prediction).__name__} prediction")


class PredictionsFile(BasePredictionWriter):
    """After each predict batch, append its rows to ``path`` (``index, path, prediction, score``).

    Args:
        path: CSV to write; ``predictions.csv`` in the run's folder (the trainer's ``default_root_dir``, or a CSV
            logger's version folder) by default. On several devices each rank writes ``<name>-rank<k>.csv``.
    """

    def __init__(self, path: str | None = None) -> None:
        super().__init__(write_interval="batch")
        self.path = None if path is None else Path(path)
        self._handle: Any = None
        self._written: Path | None = None

    def on_predict_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._written = self.path or run_folder(trainer) / "predictions.csv"
        if trainer.world_size > 1:  # each rank predicts its own share of the clips
            self._written = self._written.with_name(f"{self._written.stem}-rank{trainer.global_rank}.csv")
        self._written.parent.mkdir(parents=True, exist_ok=True)
        self._handle = self._written.open("w", newline="")
        csv.writer(self._handle).writerow(COLUMNS)

    def write_on_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, prediction: Any,
                           batch_indices: Any, batch: Any, batch_idx: int, dataloader_idx: int = 0) -> None:
        if self._handle is None:
            return
        loaders = trainer.predict_dataloaders
        loader = loaders[dataloader_idx] if isinstance(loaders, (list, tuple)) else loaders
        rows = prediction_rows(pl_module, prediction)
        indices = list(batch_indices) if batch_indices is not None else [None] * len(rows)
        writer = csv.writer(self._handle)
        for index, (predicted, score) in zip(indices, rows):
            path = clip_path(loader.dataset, index) if index is not None else ""
            writer.writerow(["" if index is None else index, path, predicted, score])

    def on_predict_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self._handle is not None:
            self._handle.close()
            self._handle = None
            rank_zero_info(f"predictions written to {self._written}")
