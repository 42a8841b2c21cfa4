"""The ``lit-app`` command: one LightningCLI for every model and data module of the app.

Examples::

    lit-app fit -c configs/kws/demo.yaml -c configs/trainer/cpu.yaml -c configs/logger/wandb.yaml
    lit-app test -c configs/kws/demo.yaml --ckpt_path runs/kws-demo/checkpoints/best.ckpt
    lit-app fit --model KWSModule --data KWSDataModule --print_config
"""

from __future__ import annotations

import os
from typing import Any

from pytorch_lightning.callbacks import RichProgressBar
from pytorch_lightning.cli import LightningArgumentParser, LightningCLI

import callbacks  # noqa: F401  (makes the app's callbacks selectable by short name)
import strategies  # noqa: F401  (registers the app's strategies)
from lit_app.advsets.datamodule import AdversarialDataModule  # noqa: F401
from lit_app.advsets.external import ExternalDetectionDataModule  # noqa: F401
from lit_app.advsets.mixture import DetectionMixture  # noqa: F401
from lit_app.base import CLASS_KEY, LitAppDataModule, LitAppModule
from lit_app.checkpoints import CheckpointError, model_class_of, read_checkpoint
from lit_app.data.asr import ASRDataModule  # noqa: F401
from lit_app.data.kws import KWSDataModule  # noqa: F401
from lit_app.errors import one_line_errors
from lit_app.models.asr import DeepSpeechModule  # noqa: F401
from lit_app.models.detector import DetectorModule  # noqa: F401
from lit_app.models.kws import KWSModule  # noqa: F401

CONFIG_FILENAME = "lit_app_config.yaml"
#: ``ckpt_path`` values Lightning resolves to a local checkpoint of the run itself.
LOCAL_CKPT_ALIASES = ("best", "last", "hpc")


def interactive() -> bool:
    return not os.environ.get("CI")


class LitAppCLI(LightningCLI):
    """LightningCLI with the app's base classes in subclass mode and its defaults."""

    def __init__(self, args: list[str] | None = None, run: bool = True, **kwargs: Any) -> None:
        # Offline unless the user chose a mode; WandbLogger(offline=True) would override even "disabled".
        os.environ.setdefault("WANDB_MODE", "offline")
        trainer_defaults: dict[str, Any] = {}
        if interactive():
            trainer_defaults["callbacks"] = [RichProgressBar()]
        else:
            trainer_defaults["enable_progress_bar"] = False
        super().__init__(
            LitAppModule,
            LitAppDataModule,
            subclass_mode_model=True,
            subclass_mode_data=True,
            # W&B writes its own config.yaml into the run folder; keep ours apart.
            save_config_kwargs={"config_filename": CONFIG_FILENAME, "overwrite": True},
            trainer_defaults=trainer_defaults,
            args=args,
            run=run,
            **kwargs,
        )

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        parser.link_arguments("data.labels", "model.init_args.labels", apply_on="instantiate")

    def _parse_ckpt_path(self) -> None:
        # Lightning reads a local ckpt_path here, in __init__, before any hook: check it first.
        if self.config.get("subcommand"):
            check_ckpt_path(self.config[self.config.subcommand].get("ckpt_path"))
        super()._parse_ckpt_path()

    def load_weights_only(self) -> None:
        """Make the Trainer load ``ckpt_path`` weights-only: Lightning would unpickle a URL in full otherwise."""
        check_ckpt_path(self.config_init[self.subcommand].get("ckpt_path"))
        self.config_init[self.subcommand]["weights_only"] = True

    before_fit = before_validate = before_test = before_predict = load_weights_only


def check_ckpt_path(ckpt_path: str | None) -> None:
    """Refuse a ``ckpt_path`` that is remote, carries pickled code, or names a model class outside the app.

    Raises:
        lit_app.checkpoints.CheckpointError: saying which.
    """
    if ckpt_path and (ckpt_path == "registry" or str(ckpt_path).startswith("registry:")):
        raise CheckpointError(f"{ckpt_path}: lit-app loads checkpoints from local files only; pass a path.")
    if ckpt_path and ckpt_path not in LOCAL_CKPT_ALIASES:
        checkpoint = read_checkpoint(ckpt_path)
        if checkpoint.get(CLASS_KEY):
            model_class_of(checkpoint, ckpt_path)


def main(args: list[str] | None = None) -> None:
    """Run ``lit-app``; an error the user can fix (bad audio, dataset, checkpoint) ends with one line."""
    with one_line_errors("lit-app"):
        LitAppCLI(args=args)


if __name__ == "__main__":
    main()
