"""The detection experiment grid: train on conditions x test on conditions x features x seeds.

One command runs a grid described in YAML and writes a results table laid out like the paper's::

    python -m lit_app.experiments.grid -c configs/detector/grid_demo.yaml
    python -m lit_app.experiments.grid -c configs/detector/grid_demo.yaml --seeds '[0]' --out_dir runs/quick
    python -m lit_app.experiments.grid --help

Sources are any detection data modules (the adversarial data modules of the attacks, the paper's set A,
generic folder or CSV sets). A train condition is a list of sources whose train/validation splits are
pooled; a test condition is a list of sources whose test splits are pooled. Every (train condition,
feature, seed) trains one detector, keeps the checkpoint with the best validation score, reloads it from
the checkpoint file alone and tests it on every test condition. Runs that finished are skipped when the
command is repeated, so an interrupted grid resumes.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Any, Literal

import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import ModelCheckpoint
from pytorch_lightning.loggers import CSVLogger, WandbLogger
from pytorch_lightning.utilities import rank_zero_info

from lit_app.advsets.mixture import DetectionMixture
from lit_app.base import LitAppDataModule
from lit_app.checkpoints import load_module
from lit_app.experiments.command import function_parser, run_command
from lit_app.experiments.results_table import ResultsTable, RunResult, row_kind
from lit_app.folders import write_json_atomic
from lit_app.metrics.detection import save_roc_figure
from lit_app.models.detector import DetectorModule

QUIET_TRAINER = {"enable_model_summary": False, "enable_progress_bar": False}
KIND_ORDER = ("known", "unknown", "multi-condition", "partly known", "control")


def load_source(spec: LitAppDataModule | str | dict[str, Any]) -> LitAppDataModule:
    """A detection data module from a data-config file, a ``class_path``/``init_args`` mapping or itself.

    A file is a LightningCLI data config (a ``data:`` section, e.g. ``configs/adversarial/whitebox_demo.yaml``),
    parsed as ``lit-app`` parses it, so the files it refers to resolve relative to it.
    """
    if isinstance(spec, LitAppDataModule):
        return spec
    from jsonargparse import ArgumentParser

    parser = ArgumentParser(exit_on_error=False)
    parser.add_subclass_arguments(LitAppDataModule, "data", required=True)
    if isinstance(spec, (str, os.PathLike)):
        if not Path(spec).is_file():
            raise FileNotFoundError(f"{spec}: no such data config (paths are relative to the working directory)")
        config = parser.parse_path(str(spec))
    else:
        config = parser.parse_object({"data": spec})
    return parser.instantiate(config).data


def attack_identities(name: str, source: LitAppDataModule) -> set[str]:
    """The attacks a source holds, as ``attack against victim``; its own name when it does not say.

    Rows are labelled known or unknown by these, so a second set of the same attack on the same victim
    (more source clips, other targets) counts as the known attack, not as a new one. Only corpora whose attacked
    clips the source labels adversarial count: a noise control served as extra normal clips holds no attack.
    """
    attack_corpora = getattr(source, "attack_corpora", None)
    if attack_corpora is None:
        return {name}
    return {f"{corpus.attack.name} against {Path(corpus.victim).resolve()}" for corpus in attack_corpora()}


def row_kinds(
    sources: dict[str, LitAppDataModule],
    train: dict[str, list[str]],
    test: dict[str, list[str]],
    pairs: list[tuple[str, str]],
    controls: list[str],
) -> dict[tuple[str, str], str]:
    """The kind (known, unknown, multi-condition...) of each ``(train, test)`` row, by the attacks its sources hold."""
    attacks = {name: attack_identities(name, source) for name, source in sources.items()}

    def held(members: list[str]) -> set[str]:
        return set().union(*(attacks[name] for name in members))

    return {(t, c): row_kind(held(train[t]), held(test[c]), c in controls) for t, c in pairs}


def grid_sources(sources: dict[str, Any], extra_sources: dict[str, Any]) -> dict[str, Any]:
    """A grid's ``sources`` and ``extra_sources`` as one mapping; a name in both is refused."""
    shared = set(sources) & set(extra_sources)
    if shared:
        raise ValueError(f"extra_sources {sorted(shared)} are already sources; give them other names")
    return {**sources, **extra_sources}


def run_grid(
    sources: dict[str, Any],
    train: dict[str, list[str]],
    test: dict[str, list[str]],
    features: dict[str, dict[str, Any]],
    extra_sources: dict[str, Any] = {},
    model: dict[str, Any] = {},
    trainer: dict[str, Any] = {},
    seeds: list[int] = [0, 1, 2],
    pairs: list[tuple[str, str]] | None = None,
    controls: list[str] = ["noise"],
    batch_size: int = 32,
    monitor: str = "val/auroc",
    logger: Literal["csv", "wandb", "none"] = "csv",
    out_dir: str = "runs/detector-grid",
    title: str = "Detector grid",
) -> ResultsTable:
    """Train and test detectors over a grid of conditions, write and return the results table.

    Args:
        sources: detection data modules by name: a data-config file of ``lit-app`` (``data:`` section, e.g.
            ``configs/adversarial/blackbox_demo.yaml``, relative to the working directory) or a
            ``class_path``/``init_args`` mapping.
        train: train conditions: name -> the sources whose train and validation splits are pooled.
        test: test conditions: name -> the sources whose test splits are pooled.
        features: table columns: name -> DetectorModule arguments that differ per column (e.g.
            ``{feature: imfcc}``).
        extra_sources: more sources, as ``sources``. For overlays: a later config file replaces ``sources``
            whole, so an overlay adds its own here and the base config's stay.
        model: DetectorModule arguments shared by every column.
        trainer: ``pytorch_lightning.Trainer`` arguments (``max_epochs``, ``accelerator``...).
        seeds: training seeds; each cell reports the mean and standard deviation over them.
        pairs: ``[train, test]`` pairs to evaluate; every combination by default.
        controls: test conditions that are controls (e.g. noise at the adversarial SNR): the table marks
            them, and their detection rate reads as a false-alarm rate.
        batch_size: clips per batch.
        monitor: validation metric that picks the checkpoint (``val/auroc``, ``val/acc`` or ``val/loss``).
        logger: ``csv`` (a metrics.csv per run), ``wandb`` (one W&B run per detector) or ``none``.
        out_dir: folder of the runs, tables and figures.
        title: heading of the Markdown results.
    """
    sources = grid_sources(sources, extra_sources)
    for condition in (train, test):
        for name, members in condition.items():
            unknown = set(members) - set(sources)
            if unknown or not members:
                raise ValueError(f"condition {name!r} names unknown sources {sorted(unknown)} (have {sorted(sources)})")
    wanted = [tuple(p) for p in pairs] if pairs else [(t, c) for t in train for c in test]
    for t, c in wanted:
        if t not in train or c not in test:
            raise ValueError(f"pair {t} -> {c} names an unknown condition")
    sources = {name: load_source(spec) for name, spec in sources.items()}
    for overrides in features.values():
        DetectorModule(**{**model, **overrides})  # fail on a bad argument before hours of training
    out = Path(out_dir)
    results: list[RunResult] = []
    curves: dict[tuple[str, str, str], tuple[torch.Tensor, torch.Tensor]] = {}
    for train_name, train_sources in train.items():
        tests = [c for t, c in wanted if t == train_name]
        if not tests:
            continue
        for feature_name, overrides in features.items():
            for seed in seeds:
                run_dir = out / "runs" / train_name / feature_name / f"seed{seed}"
                record = run_one(
                    run_dir, sources, train_sources, {c: test[c] for c in tests}, {**model, **overrides},
                    trainer, seed, batch_size, monitor, logger, f"{train_name}-{feature_name}-seed{seed}",
                )
                for test_name, metrics in record["tests"].items():
                    results.append(RunResult(train_name, test_name, feature_name, seed, metrics))
                if seed == seeds[0]:
                    saved = torch.load(run_dir / "curves.pt", weights_only=True)
                    for test_name in tests:
                        curves[(train_name, test_name, feature_name)] = saved[test_name]
    kinds = row_kinds(sources, train, test, wanted, controls)
    # Rows grouped like the anchor table: known attacks, then unknown, then multi-condition, then the rest.
    rows = sorted(wanted, key=lambda pair: KIND_ORDER.index(kinds[pair]))
    table = ResultsTable(results, kinds, list(features), rows)
    paths = table.write(out, title)
    save_grid_figures(table, curves, out)
    rank_zero_info(f"\n{table.markdown('test/auroc')}\n\nresults: {paths['markdown']} and {paths['csv']}")
    return table


def run_one(
    run_dir: Path,
    sources: dict[str, LitAppDataModule],
    train_sources: list[str],
    tests: dict[str, list[str]],
    model_args: dict[str, Any],
    trainer_args: dict[str, Any],
    seed: int,
    batch_size: int,
    monitor: str,
    logger: str,
    name: str,
) -> dict[str, Any]:
    """Train one detector and test it on each test condition; skipped when its results already exist."""
    results_path = run_dir / "results.json"
    settings = json.loads(json.dumps({"model": model_args, "trainer": trainer_args, "train": train_sources,
                                      "batch_size": batch_size, "monitor": monitor}, default=str))
    if results_path.is_file():
        record = json.loads(results_path.read_text())
        if record.get("settings") != settings:
            raise ValueError(f"{run_dir} holds a run with other settings ({record.get('settings')}); give this grid "
                             "another out_dir, or delete the folder to retrain")
        if set(tests) <= set(record["tests"]) and (run_dir / "curves.pt").is_file():
            rank_zero_info(f"{name}: done before, skipped")
            return record
    started = time.perf_counter()
    pl.seed_everything(seed, workers=True)
    detector = DetectorModule(**model_args)
    checkpoint = ModelCheckpoint(
        dirpath=run_dir / "checkpoints", filename="best", monitor=monitor,
        mode="min" if monitor.endswith("loss") or monitor.endswith("eer") else "max", enable_version_counter=False,
    )
    run_logger: Any = False
    if logger == "csv":
        run_logger = CSVLogger(run_dir, name="logs")
    elif logger == "wandb":
        run_logger = WandbLogger(project="lit-app", group=run_dir.parents[2].name, name=name, save_dir=str(run_dir))
    fitter = pl.Trainer(**{**QUIET_TRAINER, **trainer_args, "default_root_dir": str(run_dir),
                           "callbacks": [checkpoint], "logger": run_logger})
    fitter.fit(detector, datamodule=DetectionMixture([sources[s] for s in train_sources], batch_size))
    best = checkpoint.best_model_path or checkpoint.last_model_path
    if not best:
        raise RuntimeError(f"{name}: training saved no checkpoint (is {monitor!r} logged during validation?)")
    # Reload from the file alone: what a user of the checkpoint gets is what the table reports.
    detector = load_module(best, DetectorModule)
    # A PNG pair per test condition cost a quarter of the grid's time; the grid draws its own ROC figures, so the
    # per-test ones are made only for W&B, which shows them beside each run.
    detector.test_figures = isinstance(run_logger, WandbLogger)
    record: dict[str, Any] = {"settings": settings, "seed": seed, "checkpoint": best, "tests": {}}
    saved_curves = {}
    for test_name, test_sources in tests.items():
        tester = pl.Trainer(
            **QUIET_TRAINER, accelerator=trainer_args.get("accelerator", "auto"), devices=1, logger=False,
            default_root_dir=str(run_dir / f"test-{test_name}"), enable_checkpointing=False,
        )
        metrics = tester.test(detector, datamodule=DetectionMixture([sources[s] for s in test_sources], batch_size), verbose=False)[0]
        record["tests"][test_name] = {k: float(v) for k, v in metrics.items()}
        saved_curves[test_name] = detector.test_curve
        if isinstance(run_logger, WandbLogger):
            # One W&B run per detector: every test condition's metrics and figures under its own prefix.
            run_logger.log_metrics({f"{test_name}/{k.removeprefix('test/')}": v for k, v in record["tests"][test_name].items()})
            folder = Path(tester.log_dir or tester.default_root_dir)
            for figure in ("test_roc", "test_confusion_matrix"):
                run_logger.log_image(f"{test_name}/{figure.removeprefix('test_')}", [str(folder / f"{figure}.png")])
    if isinstance(run_logger, WandbLogger):
        run_logger.experiment.finish()
    record["seconds"] = time.perf_counter() - started
    torch.save(saved_curves, run_dir / "curves.pt")
    write_json_atomic(results_path, record)
    return record


def save_grid_figures(table: ResultsTable, curves: dict[tuple[str, str, str], tuple[torch.Tensor, torch.Tensor]], out: Path) -> list[Path]:
    """One ROC figure per train condition: every test condition, with the feature of the best mean AUC."""
    auc = table.values("test/auroc")
    paths = []
    for train_name in dict.fromkeys(t for t, _ in table.rows):
        row_tests = [c for t, c in table.rows if t == train_name]

        def mean_auc(feature: str, tests: list[str] = row_tests, train_name: str = train_name) -> float:
            values = [v for c in tests for v in auc.get((train_name, c, feature), [])]
            return sum(values) / len(values) if values else float("-inf")

        best = max(table.features, key=mean_auc)
        chosen = {f"-> {c}": curves[(train_name, c, best)] for c in row_tests if (train_name, c, best) in curves}
        if chosen:
            paths.append(save_roc_figure(chosen, out / f"roc_{train_name}.png", title=f"trained on {train_name} ({best}, first seed)"))
    return paths


PROG = "python -m lit_app.experiments.grid"


def build_parser() -> Any:
    """The grid's jsonargparse parser: ``-c`` YAML files, one option per argument of :func:`run_grid`."""
    return function_parser(run_grid, PROG)


def main(args: list[str] | None = None) -> ResultsTable:
    """Parse a grid YAML (``-c``, ``--print_config``, ``--help``) and run it."""
    return run_command(run_grid, PROG, args)


if __name__ == "__main__":
    main(sys.argv[1:])
