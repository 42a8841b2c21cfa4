"""The detection experiment grid: train on conditions x test on conditions x features x seeds.

One command runs a grid described in YAML and writes a results table laid out like the paper's::

    lit-app grid -c configs/detector/grid_demo.yaml
    lit-app grid -c configs/detector/grid_demo.yaml --seeds '[0]' --out_dir runs/quick
    lit-app grid --help        # (python -m lit_app.experiments.grid takes the same arguments)

Sources are any detection data modules (the adversarial data modules of the attacks, the paper's set A,
generic folder or CSV sets). A train condition is a list of sources whose train/validation splits are
pooled; a test condition is a list of sources whose test splits are pooled. Every (train condition,
feature, seed) trains one detector, keeps the checkpoint with the best validation score, reloads it from
the checkpoint file alone and tests it on every test condition. Runs that finished are skipped when the
command is repeated, so an interrupted grid resumes; a detector trained before is only tested on the test
conditions it has no results for, so adding a test condition evaluates the existing detectors on it.
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

from callbacks.predictions import clip_path
from lit_app.advsets.mixture import DetectionMixture
from lit_app.base import LitAppDataModule
from lit_app.checkpoints import load_module
from lit_app.experiments.command import add_data_arguments, function_parser, run_command
from lit_app.experiments.figures import save_det_figure
from lit_app.experiments.learning_curve import check_curves, write_learning_curves
from lit_app.experiments.results_table import ResultsTable, RunResult, row_kind
from lit_app.experiments.stage_log import StageLog
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
    add_data_arguments(parser)
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


def check_conditions(
    sources: dict[str, Any], train: dict[str, list[str]], test: dict[str, list[str]], pairs: list[tuple[str, str]] | None
) -> list[tuple[str, str]]:
    """The ``(train, test)`` pairs to evaluate (every combination by default); unknown names are refused."""
    for condition in (train, test):
        for name, members in condition.items():
            unknown = set(members) - set(sources)
            if unknown or not members:
                raise ValueError(f"condition {name!r} names unknown sources {sorted(unknown)} (have {sorted(sources)})")
    wanted = [tuple(p) for p in pairs] if pairs else [(t, c) for t in train for c in test]
    for t, c in wanted:
        if t not in train or c not in test:
            raise ValueError(f"pair {t} -> {c} names an unknown condition")
    return wanted


class GridProgress:
    """Prints where a grid stands: run k of N, its name, time elapsed and an estimate of the time left.

    The estimate is the mean time of the runs that did work in this invocation (runs done before cost nothing).
    """

    def __init__(self, total: int) -> None:
        self.total = total
        self.started = time.perf_counter()
        self.worked: list[float] = []
        self.count = 0

    def begin(self, name: str) -> None:
        self.count += 1
        self._run_started = time.perf_counter()
        print(f"[grid {self.count}/{self.total}] {name} (elapsed {clock(time.perf_counter() - self.started)}"
              f"{self.remaining()})", flush=True)

    def end(self, skipped: bool) -> None:
        if not skipped:
            self.worked.append(time.perf_counter() - self._run_started)

    def remaining(self) -> str:
        if not self.worked:
            return ""
        return f", about {clock(sum(self.worked) / len(self.worked) * (self.total - self.count + 1))} left"


def clock(seconds: float) -> str:
    minutes, rest = divmod(int(round(seconds)), 60)
    return f"{minutes}m{rest:02d}s"


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
    wandb: bool = True,
    out_dir: str = "runs/detector-grid",
    title: str = "Detector grid",
    curves: dict[str, list[str]] = {},
) -> ResultsTable:
    """Train and test detectors over a grid of conditions, write and return the results table.

    A detector trained before (same settings) is not trained again: test conditions it has no results for are
    tested with its checkpoint, so an existing grid evaluates on a new test set by adding it to ``test``.

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
        wandb: one W&B run for the whole grid (offline unless ``WANDB_MODE`` says otherwise): its ROC and DET
            figures and the results as a table. The PNGs are written into ``out_dir`` either way.
        out_dir: folder of the runs, tables and figures.
        title: heading of the Markdown results.
        curves: learning curves: name -> train conditions in growing size (e.g. data modules serving more and more
            of one set's train split through ``train_sources``). Each gets a table and a figure of ROC-AUC against
            the adversarial clips its detectors trained on (``learning_curve.md``, ``learning_curve_<feature>.png``).
    """
    sources = grid_sources(sources, extra_sources)
    wanted = check_conditions(sources, train, test, pairs)
    check_curves(curves, train)
    sources = {name: load_source(spec) for name, spec in sources.items()}
    for overrides in features.values():
        DetectorModule(**{**model, **overrides})  # fail on a bad argument before hours of training
    out = Path(out_dir)
    jobs = [(t, f, seed, [c for p, c in wanted if p == t]) for t in train for f in features for seed in seeds
            if any(p == t for p, _ in wanted)]
    progress = GridProgress(len(jobs))
    results: list[RunResult] = []
    roc_curves: dict[tuple[str, str, str], tuple[torch.Tensor, torch.Tensor]] = {}
    train_clips: dict[str, dict[str, int]] = {}
    for train_name, feature_name, seed, tests in jobs:
        run_dir = out / "runs" / train_name / feature_name / f"seed{seed}"
        name = f"{train_name}-{feature_name}-seed{seed}"
        progress.begin(name)
        record = run_one(
            run_dir, sources, train[train_name], {c: test[c] for c in tests}, {**model, **features[feature_name]},
            trainer, seed, batch_size, monitor, logger, name,
        )
        progress.end(record.pop("skipped", False))
        for test_name in tests:
            results.append(RunResult(train_name, test_name, feature_name, seed, record["tests"][test_name]))
        if "train_clips" in record:
            train_clips.setdefault(train_name, record["train_clips"])
        if seed == seeds[0]:
            saved = torch.load(run_dir / "curves.pt", weights_only=True)
            roc_curves.update({(train_name, test_name, feature_name): saved[test_name] for test_name in tests})
    kinds = row_kinds(sources, train, test, wanted, controls)
    # Rows grouped like the anchor table: known attacks, then unknown, then multi-condition, then the rest.
    rows = sorted(wanted, key=lambda pair: KIND_ORDER.index(kinds[pair]))
    table = ResultsTable(results, kinds, list(features), rows)
    paths = table.write(out, title)
    figures = save_grid_figures(table, roc_curves, out)
    if curves:
        figures += write_learning_curves(out, table, curves, train_clips)
    log_results_stage("grid", table, figures, out, wandb, {"title": title, "features": table.features})
    rank_zero_info(f"\n{table.markdown('test/auroc')}\n\nresults: {paths['markdown']} and {paths['csv']}")
    return table


def log_results_stage(stage: str, table: ResultsTable, figures: list[Path], out: Path, enabled: bool,
                      config: dict[str, Any]) -> None:
    """A results stage's W&B run (the grid, noise flooding): every figure, and the results (mean, std, n per cell
    and metric) as a table."""
    log = StageLog(out.name, stage, out, enabled, config)
    log.images({f"figures/{path.stem}": path for path in figures})
    log.table("results", *results_rows(table))
    log.finish()


def results_rows(table: ResultsTable) -> tuple[list[str], list[list[Any]]]:
    """The columns and rows of a results table as W&B shows it: one row per cell and metric."""
    return ["train", "test", "kind", "feature", "metric", "mean", "std", "n"], table.aggregate_rows()


def run_settings(model_args: dict[str, Any], trainer_args: dict[str, Any], train_sources: list[str], batch_size: int,
                 monitor: str) -> dict[str, Any]:
    """A run's settings as its results file records them (JSON types only)."""
    return json.loads(json.dumps({"model": model_args, "trainer": trainer_args, "train": train_sources,
                                  "batch_size": batch_size, "monitor": monitor}, default=str))


def finished_run(run_dir: Path, settings: dict[str, Any]) -> dict[str, Any] | None:
    """The record of a run trained before with ``settings`` (``None`` when there is none or its checkpoint is gone).

    Raises:
        ValueError: the folder holds a run with other settings.
    """
    results_path = run_dir / "results.json"
    if not results_path.is_file():
        return None
    record = json.loads(results_path.read_text())
    if record.get("settings") != settings:
        raise ValueError(f"{run_dir} holds a run with other settings ({record.get('settings')}); give this grid "
                         "another out_dir, or delete the folder to retrain")
    if not (run_dir / "curves.pt").is_file() or not Path(record.get("checkpoint", "")).is_file():
        return None
    return record


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
    """Train one detector and test it on each test condition.

    A detector trained before is not trained again: it is tested on the conditions it has no results for (none:
    skipped, and the record says ``skipped``).
    """
    settings = run_settings(model_args, trainer_args, train_sources, batch_size, monitor)
    record = finished_run(run_dir, settings)
    if record is not None and set(tests) <= set(record["tests"]):
        rank_zero_info(f"{name}: done before, skipped")
        return {**record, "skipped": True}
    started = time.perf_counter()
    run_logger = detector_logger(logger, run_dir, name)
    if record is None:
        checkpoint, clips = train_detector(run_dir, sources, train_sources, model_args, trainer_args, seed, batch_size,
                                           monitor, run_logger, name)
        record = {"settings": settings, "seed": seed, "checkpoint": checkpoint, "train_clips": clips, "tests": {}}
        saved: dict[str, Any] = {"curves": {}, "scores": {}}
    else:
        rank_zero_info(f"{name}: trained before; testing it on {sorted(set(tests) - set(record['tests']))}")
        saved = {"curves": torch.load(run_dir / "curves.pt", weights_only=True),
                 "scores": torch.load(run_dir / "scores.pt", weights_only=True) if (run_dir / "scores.pt").is_file() else {}}
    missing = {test_name: members for test_name, members in tests.items() if test_name not in record["tests"]}
    test_detector(record, run_dir, sources, missing, trainer_args, batch_size, run_logger, saved)
    if isinstance(run_logger, WandbLogger):
        run_logger.experiment.finish()
    record["seconds"] = record.get("seconds", 0.0) + time.perf_counter() - started
    torch.save(saved["curves"], run_dir / "curves.pt")
    torch.save(saved["scores"], run_dir / "scores.pt")
    write_json_atomic(run_dir / "results.json", record)
    return record


def detector_logger(logger: str, run_dir: Path, name: str) -> Any:
    """The Lightning logger of one detector's run: CSV, W&B or none."""
    if logger == "csv":
        return CSVLogger(run_dir, name="logs")
    if logger == "wandb":
        return WandbLogger(project="lit-app", group=run_dir.parents[2].name, name=name, save_dir=str(run_dir))
    return False


def train_detector(
    run_dir: Path,
    sources: dict[str, LitAppDataModule],
    train_sources: list[str],
    model_args: dict[str, Any],
    trainer_args: dict[str, Any],
    seed: int,
    batch_size: int,
    monitor: str,
    run_logger: Any,
    name: str,
) -> tuple[str, dict[str, int]]:
    """Train one detector; returns the path of the checkpoint with the best ``monitor``, and how many normal and
    adversarial clips it trained on."""
    pl.seed_everything(seed, workers=True)
    detector = DetectorModule(**model_args)
    checkpoint = ModelCheckpoint(
        dirpath=run_dir / "checkpoints", filename="best", monitor=monitor,
        mode="min" if monitor.endswith("loss") or monitor.endswith("eer") else "max", enable_version_counter=False,
    )
    fitter = pl.Trainer(**{**QUIET_TRAINER, **trainer_args, "default_root_dir": str(run_dir),
                           "callbacks": [checkpoint], "logger": run_logger})
    data = DetectionMixture([sources[s] for s in train_sources], batch_size)
    fitter.fit(detector, datamodule=data)
    best = checkpoint.best_model_path or checkpoint.last_model_path
    if not best:
        raise RuntimeError(f"{name}: training saved no checkpoint (is {monitor!r} logged during validation?)")
    labels = dataset_labels(data.datasets["train"])
    return best, {"normal": labels.count(0), "adversarial": labels.count(1)}


def test_detector(
    record: dict[str, Any],
    run_dir: Path,
    sources: dict[str, LitAppDataModule],
    tests: dict[str, list[str]],
    trainer_args: dict[str, Any],
    batch_size: int,
    run_logger: Any,
    saved: dict[str, Any],
) -> None:
    """Test the detector of ``record`` on ``tests``: metrics into ``record``, ROC curves and per-clip scores (with
    their paths and labels) into ``saved``."""
    # Reload from the file alone: what a user of the checkpoint gets is what the table reports.
    detector = load_module(record["checkpoint"], DetectorModule)
    # A PNG pair per test condition cost a quarter of the grid's time; the grid draws its own ROC figures, so the
    # per-test ones are made only for W&B, which shows them beside each run.
    detector.test_figures = isinstance(run_logger, WandbLogger)
    for test_name, test_sources in tests.items():
        tester = pl.Trainer(
            **QUIET_TRAINER, accelerator=trainer_args.get("accelerator", "auto"), devices=1, logger=False,
            default_root_dir=str(run_dir / f"test-{test_name}"), enable_checkpointing=False,
        )
        data = DetectionMixture([sources[s] for s in test_sources], batch_size)
        metrics = tester.test(detector, datamodule=data, verbose=False)[0]
        record["tests"][test_name] = {k: float(v) for k, v in metrics.items()}
        saved["curves"][test_name] = detector.test_curve
        dataset = data.datasets["test"]
        saved["scores"][test_name] = {"paths": dataset_paths(dataset), "scores": detector.test_scores,
                                      "labels": torch.tensor(dataset_labels(dataset))}
        if isinstance(run_logger, WandbLogger):
            # One W&B run per detector: every test condition's metrics and figures under its own prefix.
            run_logger.log_metrics({f"{test_name}/{k.removeprefix('test/')}": v for k, v in record["tests"][test_name].items()})
            folder = Path(tester.default_root_dir)
            for figure in ("test_roc", "test_confusion_matrix"):
                run_logger.log_image(f"{test_name}/{figure.removeprefix('test_')}", [str(folder / f"{figure}.png")])


def dataset_paths(dataset: Any) -> list[str]:
    """The file of every clip of a detection test set, in loader order."""
    return [clip_path(dataset, index) for index in range(len(dataset))]


def dataset_labels(dataset: Any) -> list[int]:
    """The label of every clip of a detection test set (0 normal, 1 adversarial), in loader order."""
    parts = getattr(dataset, "datasets", None)
    if parts is not None:  # a ConcatDataset of the sources' test sets
        return [label for part in parts for label in dataset_labels(part)]
    if hasattr(dataset, "items"):
        return [label for _, label in dataset.items]
    return [int(clip.label) for clip in dataset.clips]


def save_grid_figures(table: ResultsTable, curves: dict[tuple[str, str, str], tuple[torch.Tensor, torch.Tensor]], out: Path) -> list[Path]:
    """Per train condition, a ROC and a DET figure: every test condition, with the feature of the best mean AUC."""
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
            title = f"trained on {train_name} ({best}, first seed)"
            paths.append(save_roc_figure(chosen, out / f"roc_{train_name}.png", title=title))
            paths.append(save_det_figure(chosen, out / f"det_{train_name}.png", title=title))
    return paths


PROG = "lit-app grid"


def build_parser() -> Any:
    """The grid's jsonargparse parser: ``-c`` YAML files, one option per argument of :func:`run_grid`."""
    return function_parser(run_grid, PROG)


def main(args: list[str] | None = None) -> ResultsTable:
    """Parse a grid YAML (``-c``, ``--print_config``, ``--help``) and run it."""
    return run_command(run_grid, PROG, args)


if __name__ == "__main__":
    main(sys.argv[1:])
