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
from lit_app.base import LitAppDataModule, LitAppModule
from lit_app.data.asr import ASRDataModule  # noqa: F401
from lit_app.data.kws import KWSDataModule  # noqa: F401
from lit_app.models.asr import DeepSpeechModule  # noqa: F401
from lit_app.models.detector import DetectorModule  # noqa: F401
from lit_app.models.kws import KWSModule  # noqa: F401

CONFIG_FILENAME = "lit_app_config.yaml"


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


def main(args: list[str] | None = None) -> None:
    LitAppCLI(args=args)


if __name__ == "__main__":
    main()
