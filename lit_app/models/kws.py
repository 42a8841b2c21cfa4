"""The keyword-spotting victim: MFCC front-end and cnn-trad-fpool3 as one LightningModule."""

from __future__ import annotations

from typing import Any, Literal

import torch
import torch.nn.functional as F
from pytorch_lightning.loggers import WandbLogger
from pytorch_lightning.utilities import rank_zero_info
from torch import nn
from torchmetrics.classification import MulticlassAccuracy, MulticlassConfusionMatrix

from lit_app.audio.features import MFCC
from lit_app.base import LitAppModule
from lit_app.data.vocab import task_labels
from lit_app.nets.kws_cnn import CnnTradFpool3
from lit_app.run_folder import run_folder


class KWSModule(LitAppModule):
    """Keyword spotter that takes 16 kHz waveforms ``[batch, samples]`` and returns class logits.

    The feature front-end is part of the model, so a checkpoint alone rebuilds the whole victim (labels,
    feature settings, weights) and attacks can differentiate from the logits back to the waveform.

    Args:
        labels: class names in index order (the data module provides them); the 12-label task by default.
        n_mfcc: MFCC coefficients (and mel filters).
        win_ms: analysis window in milliseconds.
        hop_ms: frame hop in milliseconds.
        sample_rate: input sample rate.
        clip_samples: input length in samples.
        dropout: dropout after each convolution.
        padding: convolution padding, ``same`` (TensorFlow's model) or ``valid`` (half the compute).
        batch_norm: batch normalisation after each convolution (a departure from the original network
            that makes it train in far fewer steps).
        feature_norm: standardise each coefficient with running batch statistics before the CNN.
        label_smoothing: label smoothing of the cross-entropy loss.
        **optimizer_settings: optimiser and schedule settings of :class:`~lit_app.base.LitAppModule`.
    """

    def __init__(
        self,
        labels: list[str] | None = None,
        n_mfcc: int = 40,
        win_ms: float = 30.0,
        hop_ms: float = 10.0,
        sample_rate: int = 16000,
        clip_samples: int = 16000,
        dropout: float = 0.5,
        padding: Literal["same", "valid"] = "same",
        batch_norm: bool = False,
        feature_norm: bool = True,
        label_smoothing: float = 0.0,
        **optimizer_settings: Any,
    ) -> None:
        super().__init__(**optimizer_settings)
        self.save_hyperparameters()
        self.labels = list(labels) if labels else task_labels("keywords12")
        self.hparams["labels"] = self.labels
        num_classes = len(self.labels)
        self.front_end = MFCC(sample_rate, n_mfcc=n_mfcc, n_mels=n_mfcc, win_ms=win_ms, hop_ms=hop_ms)
        self.feature_norm = nn.BatchNorm1d(n_mfcc, affine=False) if feature_norm else nn.Identity()
        self.net = CnnTradFpool3(num_classes, self.front_end.num_frames(clip_samples), n_mfcc, dropout, padding, batch_norm)
        self.label_smoothing = label_smoothing
        self.train_acc = MulticlassAccuracy(num_classes, average="micro")
        self.val_acc = MulticlassAccuracy(num_classes, average="micro")
        self.test_acc = MulticlassAccuracy(num_classes, average="micro")
        self.test_confusion = MulticlassConfusionMatrix(num_classes)

    def features(self, waveform: torch.Tensor) -> torch.Tensor:
        """Normalised MFCCs ``[batch, frames, coefficients]`` of ``[batch, samples]`` waveforms."""
        return self.feature_norm(self.front_end(waveform)).transpose(1, 2)

    def forward(self, waveform: torch.Tensor) -> torch.Tensor:
        return self.net(self.features(waveform))

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        audio, target = batch
        logits = self(audio)
        loss = F.cross_entropy(logits, target, label_smoothing=self.label_smoothing)
        self.train_acc(logits, target)
        self.log("train/loss", loss, prog_bar=True)
        self.log("train/acc", self.train_acc, on_step=False, on_epoch=True)
        return loss

    def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        audio, target = batch
        logits = self(audio)
        self.val_acc(logits, target)
        self.log("val/loss", F.cross_entropy(logits, target), sync_dist=True)
        self.log("val/acc", self.val_acc, prog_bar=True)

    def test_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        audio, target = batch
        logits = self(audio)
        self.test_acc(logits, target)
        self.test_confusion(logits, target)
        self.log("test/loss", F.cross_entropy(logits, target), sync_dist=True)
        self.log("test/acc", self.test_acc)

    def on_test_epoch_end(self) -> None:
        confusion = self.test_confusion.compute()
        per_class = confusion.diag() / confusion.sum(1).clamp(min=1)
        for label, accuracy in zip(self.labels, per_class.tolist()):
            self.log(f"test/acc_{label}", accuracy, sync_dist=False)
        if self.trainer.is_global_zero:
            self.save_confusion_figure()
        self.test_confusion.reset()

    def save_confusion_figure(self) -> None:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, _ = self.test_confusion.plot(labels=self.labels)
        fig.set_size_inches(9, 8)
        folder = run_folder(self.trainer)
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / "test_confusion_matrix.png"
        fig.savefig(path, dpi=100, bbox_inches="tight")
        plt.close(fig)
        rank_zero_info(f"Confusion matrix saved to {path}")
        for logger in self.loggers:
            if isinstance(logger, WandbLogger):
                logger.log_image("test/confusion_matrix", [str(path)])

    def predict_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        audio = batch[0] if isinstance(batch, (list, tuple)) else batch
        return self(audio).softmax(-1)

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        saved = checkpoint.get("hyper_parameters", {}).get("labels")
        if saved is not None and list(saved) != self.labels:
            raise ValueError(
                f"the checkpoint was trained on labels {saved}, but this run uses {self.labels}. "
                "Use the data task the victim was trained on (data.init_args.task)."
            )
