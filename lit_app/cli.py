"""The ``lit-app`` command: one LightningCLI for every model and data module of the app, and the app's other jobs.

Examples::

    lit-app fit -c configs/kws/demo.yaml -c configs/trainer/cpu.yaml -c configs/logger/wandb.yaml
    lit-app test -c configs/kws/demo.yaml --ckpt_path runs/kws-demo/checkpoints/best.ckpt
    lit-app fit --model KWSModule --data KWSDataModule --print_config
    lit-app grid -c configs/detector/grid_demo.yaml        # jobs other than the Trainer's: see JOBS
    lit-app score --detector runs/.../best.ckpt --inputs '[clips/]' --out scores.csv
"""

from __future__ import annotations

import functools
import importlib
import os
import sys
from typing import Any

from pytorch_lightning import LightningModule, Trainer
from pytorch_lightning.callbacks import RichProgressBar
from pytorch_lightning.cli import LightningArgumentParser, LightningCLI, SaveConfigCallback

import callbacks  # noqa: F401  (makes the app's callbacks selectable by short name)
import strategies  # noqa: F401  (registers the app's strategies)
from callbacks.predictions import PredictionsFile
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
from lit_app.run_folder import run_folder

CONFIG_FILENAME = "lit_app_config.yaml"
#: ``ckpt_path`` values Lightning resolves to a local checkpoint of the run itself.
LOCAL_CKPT_ALIASES = ("best", "last", "hpc")

#: ``lit-app`` subcommands that are not Trainer calls: name -> (``module:function``, one line of help)
JOBS: dict[str, tuple[str, str]] = {
    "generate": ("lit_app.advsets.generate:generate", "Build adversarial sets (attack corpora and noise controls)."),
    "grid": ("lit_app.experiments.grid:run_grid", "Train and test detectors over a grid of conditions."),
    "noise-flooding": ("lit_app.experiments.noise_flooding:run_noise_flooding",
                       "Score a grid's test sets with noise flooding, alone and fused with trained detectors."),
    "adaptive": ("lit_app.experiments.adaptive:run_adaptive", "Attack a victim and a detector at once (adaptive attacker)."),
    "score": ("lit_app.experiments.score:score", "Is this clip adversarial? Score WAVs with a trained detector."),
    "engine-transfer": ("lit_app.experiments.engine_transfer:run_engine_transfer",
                        "Leave one speech engine out: train keyword victims without it, test them on it."),
    "perturbation-gain": ("lit_app.experiments.perturbation_gain:run_perturbation_gain",
                          "Score trained detectors on attacks made louder and quieter, beside same-energy noise."),
}


def interactive() -> bool:
    return not os.environ.get("CI")


class RunFolderConfig(SaveConfigCallback):
    """Saves the run's config into the run's own folder (:func:`lit_app.run_folder.run_folder`), not the logger's.

    A W&B logger's folder is ``runs/`` for every run; a config saved there by ``test`` was overwritten by the next
    run of any model. ``fit`` writes ``lit_app_config.yaml``, the other stages ``lit_app_config-<stage>.yaml``.
    """

    def save_config(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        stage = getattr(stage, "value", stage)  # Lightning passes its TrainerFn enum
        name = CONFIG_FILENAME if stage == "fit" else CONFIG_FILENAME.replace(".yaml", f"-{stage}.yaml")
        folder = run_folder(trainer)
        folder.mkdir(parents=True, exist_ok=True)
        self.parser.save(self.config, str(folder / name), skip_none=False, overwrite=True, multifile=self.multifile)


class LitAppCLI(LightningCLI):
    """LightningCLI with the app's base classes in subclass mode and its defaults.

    The optimiser is the model's own (``--model.init_args.optimizer``, ``lr``, ``lr_schedule``...): LightningCLI's
    ``--optimizer``/``--lr_scheduler`` would silently replace the model's ``configure_optimizers``, so they are
    not offered (see :func:`refuse_cli_optimizer`).
    """

    def __init__(self, args: list[str] | None = None, run: bool = True, **kwargs: Any) -> None:
        # Offline unless the user chose a mode; WandbLogger(offline=True) would override even "disabled".
        os.environ.setdefault("WANDB_MODE", "offline")
        trainer_defaults: dict[str, Any] = {"callbacks": [PredictionsFile()]}
        if interactive():
            trainer_defaults["callbacks"].append(RichProgressBar())
        else:
            trainer_defaults["enable_progress_bar"] = False
        kwargs.setdefault("save_config_callback", RunFolderConfig)
        super().__init__(
            LitAppModule,
            LitAppDataModule,
            subclass_mode_model=True,
            subclass_mode_data=True,
            save_config_kwargs={"config_filename": CONFIG_FILENAME, "overwrite": True, "save_to_log_dir": False},
            trainer_defaults=trainer_defaults,
            auto_configure_optimizers=False,
            args=args,
            run=run,
            **kwargs,
        )

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        parser.link_arguments("data.labels", "model.init_args.labels", apply_on="instantiate")

    def _add_subcommands(self, parser: LightningArgumentParser, **kwargs: Any) -> None:
        super()._add_subcommands(parser, **kwargs)
        list_jobs(parser)

    def _parse_ckpt_path(self) -> None:
        # Lightning reads a local ckpt_path here, in __init__, before any hook: check it first.
        subcommand = self.config.get("subcommand")
        if subcommand:
            check_ckpt_path(self.config[subcommand].get("ckpt_path"))
        model = model_section_of(self.config[subcommand].get("ckpt_path")) if subcommand else None
        if model is None:
            return super()._parse_ckpt_path()
        self.config = self.parser.parse_object({subcommand: {"model": model}}, self.config)

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
        checkpoint_header(str(ckpt_path))


def checkpoint_header(path: str) -> tuple[str | None, dict[str, Any]]:
    """The model class a checkpoint names (checked to be one of the app's) and its hyper-parameters, read once per
    version of the file: the checks of one command line ask for the same file several times, and the weights are
    not kept.

    Raises:
        lit_app.checkpoints.CheckpointError: the file is missing or remote, carries pickled code, or names a class
            outside the app.
    """
    if not os.path.isfile(path):
        read_checkpoint(path)  # raises, saying what is wrong with the path
    stat = os.stat(path)
    return _checkpoint_header(path, stat.st_mtime_ns, stat.st_size)


@functools.lru_cache(maxsize=4)
def _checkpoint_header(path: str, mtime_ns: int, size: int) -> tuple[str | None, dict[str, Any]]:
    checkpoint = read_checkpoint(path)
    if checkpoint.get(CLASS_KEY):
        model_class_of(checkpoint, path)
    return checkpoint.get(CLASS_KEY), dict(checkpoint.get("hyper_parameters") or {})


def list_jobs(parser: LightningArgumentParser) -> None:
    """Show :data:`JOBS` in ``lit-app --help`` beside fit/validate/test/predict; :func:`main` runs them."""
    from jsonargparse import ArgumentParser

    for name, (_, help_text) in JOBS.items():
        parser._subcommands_action.add_subcommand(name, ArgumentParser(description=help_text), help=help_text)


def model_section_of(ckpt_path: str | None) -> dict[str, Any] | None:
    """The ``model:`` section of a checkpoint written outside LightningCLI (the grid's detectors), else ``None``.

    LightningCLI rebuilds the model of ``--ckpt_path`` from the checkpoint's hyperparameters and, in subclass
    mode, needs their ``_class_path``, which only modules built by LightningCLI have; the app's own class entry
    names the class of every checkpoint it writes.
    """
    if not ckpt_path or not os.path.isfile(ckpt_path):
        return None
    class_path, hparams = checkpoint_header(str(ckpt_path))
    hparams = {key: value for key, value in hparams.items() if key != "_instantiator"}
    if not hparams or "_class_path" in hparams or not class_path:
        return None
    return {"class_path": class_path, "dict_kwargs": hparams}


def refuse_cli_optimizer(args: list[str]) -> None:
    """Stop with one line when ``--optimizer`` or ``--lr_scheduler`` is given: the models configure their own."""
    for arg in args:
        option = arg.split("=", 1)[0]
        if option.split(".", 1)[0] in ("--optimizer", "--lr_scheduler"):
            sys.exit(f"lit-app: {option} is not available: every model of the app sets its own optimiser and schedule. "
                     "Use --model.init_args.optimizer (adamw, adam, sgd), --model.init_args.lr, "
                     "--model.init_args.weight_decay and --model.init_args.lr_schedule (onecycle, cosine, constant).")


def with_checkpoint_model(args: list[str]) -> list[str]:
    """``validate``/``test``/``predict`` with a ``--ckpt_path`` of the app and no model: the checkpoint's model class
    is put first (``--model CLASS``), so a data config is all they need; configs and flags given still win."""
    if not args or args[0] not in ("validate", "test", "predict"):
        return args
    paths = [value for option, value in zip(args, args[1:]) if option == "--ckpt_path"]
    paths += [arg.split("=", 1)[1] for arg in args if arg.startswith("--ckpt_path=")]
    if not paths or not os.path.isfile(paths[-1]):
        return args
    try:
        class_path, _ = checkpoint_header(paths[-1])
    except Exception:  # an unreadable file: the checkpoint loading proper says what is wrong with it
        return args
    return [args[0], "--model", class_path, *args[1:]] if class_path else args


def run_job(name: str, args: list[str]) -> Any:
    """Run the job ``name`` of :data:`JOBS` on ``args`` (``-c``, ``--print_config``, ``--help`` as for ``fit``)."""
    from lit_app.experiments.command import run_command

    target, _ = JOBS[name]
    module, _, function = target.partition(":")
    return run_command(getattr(importlib.import_module(module), function), f"lit-app {name}", args)


def run(args: list[str] | None = None) -> Any:
    """Run ``lit-app`` and return what a job of :data:`JOBS` returns (a grid's results table...); an error the user
    can fix (bad audio, dataset, checkpoint) ends with one line."""
    args = sys.argv[1:] if args is None else list(args)
    with one_line_errors("lit-app"):
        if args and args[0] in JOBS:
            return run_job(args[0], args[1:])
        refuse_cli_optimizer(args)
        LitAppCLI(args=with_checkpoint_model(args))
        return None


def main(args: list[str] | None = None) -> None:
    """The ``lit-app`` command. It returns nothing: the console script passes a return value to ``sys.exit``, which
    would print a job's results object and exit with status 1."""
    run(args)


if __name__ == "__main__":
    main()
