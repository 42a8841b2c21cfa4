"""Base classes that every model and data module of the app derives from.

LightningCLI selects subclasses of these in YAML (``class_path``/``init_args``) or on the command line
(``--model KWSModule``).
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, ClassVar, Literal

import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader

if TYPE_CHECKING:
    from lit_app.data.source_clip import SourceClip

CLASS_KEY = "lit_app_class"


class LitAppModule(pl.LightningModule):
    """Base of every LightningModule of the app: optimiser settings and self-describing checkpoints.

    Checkpoints record the module's import path, so :func:`lit_app.checkpoints.load_module` rebuilds the
    model from the checkpoint file alone.

    Args:
        optimizer: ``adamw``, ``adam`` or ``sgd`` (use ``sgd`` with the DGC strategy).
        lr: peak learning rate.
        weight_decay: decoupled for AdamW, L2 for SGD and Adam.
        momentum: SGD momentum.
        nesterov: Nesterov momentum for SGD.
        lr_schedule: ``onecycle`` (warm-up then cosine decay), ``cosine`` (decay only) or ``constant``.
        warmup_fraction: share of training steps spent warming up in ``onecycle``.
    """

    #: Hyper-parameters that checkpoints written before they existed held implicitly: :func:`load_module` rebuilds
    #: such a checkpoint with these values instead of today's defaults.
    legacy_hparams: ClassVar[dict[str, Any]] = {}

    def __init__(
        self,
        optimizer: Literal["adamw", "adam", "sgd"] = "adamw",
        lr: float = 1e-3,
        weight_decay: float = 0.0,
        momentum: float = 0.9,
        nesterov: bool = False,
        lr_schedule: Literal["onecycle", "cosine", "constant"] = "onecycle",
        warmup_fraction: float = 0.05,
    ) -> None:
        super().__init__()
        self.optimizer_name = optimizer
        self.lr = lr
        self.weight_decay = weight_decay
        self.momentum = momentum
        self.nesterov = nesterov
        self.lr_schedule = lr_schedule
        self.warmup_fraction = warmup_fraction

    def configure_optimizers(self) -> Any:
        params = [p for p in self.parameters() if p.requires_grad]
        if self.optimizer_name == "sgd":
            optimizer = torch.optim.SGD(
                params, lr=self.lr, momentum=self.momentum, nesterov=self.nesterov, weight_decay=self.weight_decay
            )
        elif self.optimizer_name == "adam":
            optimizer = torch.optim.Adam(params, lr=self.lr, weight_decay=self.weight_decay)
        else:
            optimizer = torch.optim.AdamW(params, lr=self.lr, weight_decay=self.weight_decay)
        if self.lr_schedule == "constant":
            return optimizer
        total = max(int(self.trainer.estimated_stepping_batches), 1)
        warmup = int(self.warmup_fraction * total) if self.lr_schedule == "onecycle" else 0
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, warmup_cosine(warmup, total))
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint[CLASS_KEY] = f"{type(self).__module__}.{type(self).__qualname__}"


def warmup_cosine(warmup: int, total: int) -> Callable[[int], float]:
    """lr factor per optimizer step: linear warm-up over ``warmup`` steps, then cosine decay to 0 at ``total``."""

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = min((step - warmup) / max(total - warmup, 1), 1.0)
        return 0.5 * (1.0 + math.cos(math.pi * progress))

    return factor


def architecture_settings(init_args: Mapping[str, Any]) -> dict[str, Any]:
    """A model config's ``init_args`` without :class:`LitAppModule`'s optimiser settings.

    For benchmarks that build the same network with an optimiser of their own.
    """
    optimizer_settings = set(inspect.signature(LitAppModule.__init__).parameters)
    return {key: value for key, value in init_args.items() if key not in optimizer_settings}


class LitAppDataModule(pl.LightningDataModule):
    """Base of every LightningDataModule of the app.

    Subclasses that serve classification data expose ``labels`` (class names in index order); the CLI
    passes them to models that take a ``labels`` argument. Each subclass builds the loader of one split in
    ``_loader``; training shuffles, the other stages do not, and ``predict`` reads the test split.
    """

    labels: list[str] | None = None
    #: the split each stage reads, as the subclass's folders and manifests name it
    split_names: Mapping[str, str] = {"train": "train", "val": "val", "test": "test"}

    def _loader(self, split: str, shuffle: bool) -> DataLoader:
        raise NotImplementedError(f"{type(self).__name__} must build its loaders in _loader(split, shuffle)")

    def attack_sources(self) -> list[SourceClip]:
        """Every clean clip of the corpus that an attack may start from, each with its detection split.

        Victims' data modules override this; the adversarial-set builder calls it after ``prepare_data``.
        """
        raise TypeError(f"cannot attack clips of a {type(self).__name__}; use a KWSDataModule or an ASRDataModule")

    def train_dataloader(self) -> DataLoader:
        return self._loader(self.split_names["train"], shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader(self.split_names["val"], shuffle=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader(self.split_names["test"], shuffle=False)

    def predict_dataloader(self) -> DataLoader:
        return self._loader(self.split_names["test"], shuffle=False)
