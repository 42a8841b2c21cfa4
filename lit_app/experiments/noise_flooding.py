"""The noise-flooding detector on a grid's test conditions: detection with no detector training at all.

The detector grid (:mod:`lit_app.experiments.grid`) trains CNNs on some attacks and tests them on others.
Noise flooding (:class:`lit_app.defences.NoiseFlooding`) trains on nothing, so it makes the other half of
the comparison: how well a clip is told apart by asking its victim about noisy copies of it. This command
scores the test split of every test condition of a grid config with the victim each corpus was made
against, and writes a table in the grid's layout (rows ``nothing -> test``, one column per noise level,
mean ± std over noise seeds)::

    lit-app noise-flooding -c configs/detector/noise_flooding_demo.yaml
    # (python -m lit_app.experiments.noise_flooding takes the same arguments)

With ``fuse_with``, trained detectors of the grid are scored on the same clips, alone and fused with noise
flooding, in rows ``train -> test``: by the larger of the two scores (flagged when either flags it) and, with
``fusion: [max, mean]``, also by their average (a clean clip that one of them wrongly scores high stays low);
with ``calibrated``, by the larger of the two scores once each is ranked among the normal clips of the detector's
own validation split (raw scales no longer decide; ours, issue 25); with ``choose_fusion_on_val``, also by
whichever rule does better on each detector's own validation split; with ``over_confidence_quantile``, every fused
column also flags the clips its keyword victim is surer of than of nearly any natural clip of their class
(:class:`lit_app.defences.OverConfidence`; ours, issue 25).
The two fail on different attacks: a CNN trained on loud black-box perturbations catches PGD, which noise
flooding misses, and noise flooding catches the minimal perturbations of other attacks that the CNN never saw.

Finished (noise level, seed) runs are skipped when the command is repeated.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch
from pytorch_lightning.utilities import rank_zero_info
from torch.utils.data import DataLoader
from torchmetrics.classification import BinaryROC
from torchmetrics.functional.classification import binary_auroc

from lit_app.advsets.detection import DetectionClipDataset, collate_detection
from lit_app.attacks.victims import ClassifierVictim, Victim, load_victim
from lit_app.checkpoints import load_module
from lit_app.defences import NoiseFlooding, OverConfidence
from lit_app.defences.over_confidence import Statistic, validation_clips
from lit_app.device import resolve_device
from lit_app.experiments.command import run_command
from lit_app.experiments.figures import save_det_figure
from lit_app.experiments.grid import (
    build_parser,
    dataset_labels,
    dataset_paths,
    grid_sources,
    load_source,
    log_results_stage,
    row_kinds,
)
from lit_app.experiments.results_table import ResultsTable, RunResult, row_kind
from lit_app.folders import write_json_atomic
from lit_app.metrics.detection import detection_metrics, save_roc_figure, seed_mean_auroc_interval
from lit_app.models.detector import DetectorModule

TRAIN = "nothing"


def victim_items(
    name: str, source: Any, splits: list[str], corpora: Literal["test_sets", "train_sets"] = "test_sets",
    victim: str | None = None,
) -> dict[str, list[tuple[str, int]]]:
    """The clips ``(path, label)`` a grid source serves (from ``splits`` of its test corpora, or of the corpora it
    trains on), grouped by the victim checkpoint they were made against: the one its corpora name, or ``victim``
    for a source that does not say (any detection data module)."""
    if victim is not None:
        return {victim: [item for split in splits for item in served_items(source, split)]}
    if not hasattr(source, corpora) or not hasattr(source, "examples"):
        raise ValueError(f"source {name!r} ({type(source).__name__}) does not say which victim its clips were made "
                         "against; noise flooding needs an adversarial data module (lit_app.advsets.datamodule) or the "
                         f"victim named: `--victims '{{{name}: path/to/victim.ckpt}}'`")
    sets = getattr(source, corpora)
    roots = [(f"{corpus.root}{os.sep}", corpus) for corpus in sets]
    grouped: dict[str, list[tuple[str, int]]] = {}
    for path, label in (item for split in splits for item in source.examples(sets, split)):
        corpus = next(c for prefix, c in roots if path.startswith(prefix))
        grouped.setdefault(str(corpus.victim), []).append((path, label))
    return grouped


def served_items(source: Any, split: str) -> list[tuple[str, int]]:
    """``(path, label)`` of the clips any detection data module serves for ``split``, in its loader's order."""
    source.setup("test" if split == "test" else "fit")
    loader = {"train": source.train_dataloader, "val": source.val_dataloader, "test": source.test_dataloader}[split]()
    return list(zip(dataset_paths(loader.dataset), dataset_labels(loader.dataset)))


def clip_paths(by_victim: dict[str, list[tuple[str, int]]]) -> list[str]:
    """The paths of a source's clips, in the order they are scored."""
    return [path for clips in by_victim.values() for path, _ in clips]


def score_clips(
    score: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], items: list[tuple[str, int]], batch_size: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Scores (on the CPU; ``score`` may give several per clip, ``[..., batch]``) and labels of ``(path, label)``
    clips, read and scored ``batch_size`` at a time."""
    scores, labels = [], []
    for batch in DataLoader(DetectionClipDataset(items), batch_size=batch_size, collate_fn=collate_detection):
        scores.append(score(batch.audio, batch.lengths).cpu())
        labels.append(batch.labels)
    return torch.cat(scores, -1), torch.cat(labels)


def evaluate(scores: torch.Tensor, labels: torch.Tensor) -> tuple[dict[str, float], tuple[torch.Tensor, torch.Tensor]]:
    """The grid's test metrics (``test/auroc``, ``test/eer``, ``test/recall``, ``test/fpr``...) and the ROC curve."""
    metrics = detection_metrics("test/")
    values = {k: float(v) for k, v in metrics(scores, labels).items()}
    values["test/fpr"] = 1.0 - values["test/specificity"]
    fpr, tpr, _ = BinaryROC()(scores, labels)
    return values, (fpr, tpr)


def read_grid(paths: list[str]) -> dict[str, Any]:
    """The settings of a grid config (and its overlays, later files winning) as the grid itself reads them."""
    for path in paths:
        if not Path(path).is_file():
            raise FileNotFoundError(f"{path}: no such grid config (paths are relative to the working directory)")
    return build_parser().parse_args([arg for path in paths for arg in ("-c", path)]).as_dict()


def column_name(snr_db: float) -> str:
    return f"noise flooding {snr_db:g} dB"


@dataclass(frozen=True)
class NormalScores:
    """A fused detector's two scores on the normal clips of its own validation split (clean clips, and the noise
    negatives of a detector trained with them): what the ``calibrated`` rule ranks every clip against."""

    cnn: torch.Tensor
    flooding: torch.Tensor


def normal_tail(reference: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
    """Each score's tail probability among normal clips: the share of ``reference`` at or above it, the score itself
    counted (a permutation p-value, never 0)."""
    at_or_above = (reference[None, :] >= scores[:, None]).sum(1)
    return (at_or_above + 1).double() / (reference.numel() + 1)


CALIBRATED_FALSE_ALARMS = 0.05  # the calibrated rule's design share of clean clips flagged at its threshold
CALIBRATED_THRESHOLD = 0.5


def calibrated_max(cnn: torch.Tensor, flooding: torch.Tensor, normal: NormalScores | None = None) -> torch.Tensor:
    """Either detector's evidence, each on the scale of normal clips: the smaller of the two scores' tail
    probabilities among normal validation clips (the min-p combination of two tests), mapped to [0, 1) so that 0.5
    is that p at ``CALIBRATED_FALSE_ALARMS / 2`` (a Bonferroni split: about 5% of clean clips flagged). A clip is as
    suspect as it is unusual to either detector, whatever the scale of its raw scores."""
    if normal is None:
        raise ValueError("the calibrated fusion rule needs the detectors' scores on normal validation clips")
    smaller = torch.minimum(normal_tail(normal.cnn, cnn), normal_tail(normal.flooding, flooding))
    log_p, log_alpha = smaller.log(), torch.tensor(CALIBRATED_FALSE_ALARMS / 2, dtype=torch.float64).log()
    return (log_p / (log_p + log_alpha)).float()  # 0 at p = 1, 0.5 at p = alpha, towards 1 as p -> 0


FusionRule = Callable[[torch.Tensor, torch.Tensor, "NormalScores | None"], torch.Tensor]
FUSION_RULES: dict[str, FusionRule] = {
    "max": lambda cnn, flooding, normal=None: torch.maximum(cnn, flooding),
    "mean": lambda cnn, flooding, normal=None: (cnn + flooding) / 2,
    "calibrated": calibrated_max,
}
FUSED_COLUMNS = {"max": "CNN + {}", "mean": "mean of CNN and {}",
                 "calibrated": "CNN or {}, calibrated on normal val clips"}  # {}: the noise-flooding column
CHOSEN_COLUMN = "CNN + {}, rule chosen on val"


def choose_fusion(
    rules: list[str], alone: torch.Tensor, flooded: torch.Tensor, labels: torch.Tensor, normal: NormalScores | None = None
) -> tuple[str, dict[str, float]]:
    """The rule of ``rules`` whose fused scores have the highest ROC-AUC on these (validation) clips (the first
    on a tie), and every rule's ROC-AUC."""
    aurocs = {rule: float(binary_auroc(FUSION_RULES[rule](alone, flooded, normal), labels)) for rule in rules}
    return max(rules, key=aurocs.__getitem__), aurocs


def load_detectors(checkpoints: dict[tuple[str, int], str], device: torch.device) -> dict[tuple[str, int], DetectorModule]:
    """The trained detectors of ``checkpoints`` (by key), in eval mode on ``device``."""
    for checkpoint in checkpoints.values():
        if not Path(checkpoint).is_file():
            raise FileNotFoundError(f"{checkpoint}: no such detector checkpoint; run the grid that trains it first")
    return {key: load_module(path, DetectorModule, map_location=device).eval() for key, path in checkpoints.items()}


def trained_scores(
    detectors: dict[tuple[str, int], DetectorModule], paths: dict[str, list[str]], device: torch.device, batch_size: int
) -> dict[tuple[str, int], dict[str, torch.Tensor]]:
    """Scores of trained detectors (by key) on each source's clips; every clip is read once for all of them."""

    @torch.no_grad()
    def score(audio: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        audio, lengths = audio.to(device), lengths.to(device)
        return torch.stack([detector.score(audio, lengths) for detector in detectors.values()])

    by_source = {name: score_clips(score, [(path, 0) for path in clips], batch_size)[0] for name, clips in paths.items()}
    return {key: {name: scores[row] for name, scores in by_source.items()} for row, key in enumerate(detectors)}


def run_noise_flooding(
    grid: str | list[str],
    snr_db: list[float] = [15.0, 20.0, 30.0],
    draws: int = 8,
    seeds: list[int] = [0, 1, 2],
    tests: list[str] | None = None,
    splits: list[str] = ["test"],
    fuse_with: dict[str, str] = {},
    fuse_snr_db: float | None = None,
    fusion: list[Literal["max", "mean", "calibrated"]] = ["max"],
    choose_fusion_on_val: bool = False,
    over_confidence_quantile: float | None = None,
    over_confidence_statistic: Statistic = "margin",
    over_confidence_rank_weight: float = 0.0,
    bootstrap: int = 1000,
    batch_size: int = 64,
    victims: dict[str, str] = {},
    wandb: bool = True,
    device: str = "auto",
    out_dir: str = "runs/noise-flooding",
    title: str = "Noise flooding (no detector training)",
) -> ResultsTable:
    """Score a grid's test conditions with noise flooding; write and return the results table.

    Args:
        grid: a grid YAML (e.g. ``configs/detector/grid_demo.yaml``), or several composed as the grid composes
            them (a grid config and its overlays); its ``sources`` (with ``extra_sources``), ``train``, ``test``
            and ``controls`` are used, relative to the working directory as for the grid.
        snr_db: noise levels, one table column each.
        draws: noisy copies per clip.
        seeds: noise seeds; each cell reports the mean and standard deviation over them.
        tests: the test conditions to score; all of the grid's by default.
        splits: which splits of the test corpora to score. Noise flooding trains on nothing, so every split is
            unseen data to it (``[train, val, test]`` gives it more clips); a fused detector is compared on
            ``test`` only, the split its CNN never saw.
        fuse_with: trained detectors to score alone and fused with noise flooding: the grid's train condition
            -> checkpoint path with ``{seed}`` (seed k of the detector pairs with noise seed k), e.g.
            ``black: runs/detector-grid-demo/runs/black/IMFCC/seed{seed}/checkpoints/best.ckpt``.
        fuse_snr_db: the noise level fused with them; the first of ``snr_db`` by default.
        fusion: how the two scores combine, one column each: ``max`` (flagged when either flags), ``mean``
            (their average: a clean clip one of them wrongly scores high is held down by the other) and
            ``calibrated`` (each score first turned into its tail probability among the normal clips of the
            detector's validation split, then the larger: raw scores on different scales no longer decide).
        choose_fusion_on_val: also a column in which each fused detector uses the rule of ``fusion`` with the
            higher ROC-AUC on the ``val`` split of its own train condition (the first listed on a tie), so the
            rule is picked without looking at any test clip or unknown attack (the choices go to
            ``fusion_choices.json``). The CNN's checkpoint was picked on the same split, which flatters it there.
        over_confidence_quantile: also flag, in every fused column, the clips on which their keyword victim's logit
            margin lies above this quantile of its margins on natural clips of the class it answers (the validation
            clips of the data its corpora attacked; :class:`lit_app.defences.OverConfidence`): the examples pushed
            far past the boundary that noise flooding cannot catch. Clips made against a recogniser are not checked.
        over_confidence_statistic: what the check ranks: ``margin`` (the logit margin, as above) or ``flatness``
            (minus the log norm of the input gradient of the victim's loss at its answer).
        over_confidence_rank_weight: also add, to every fused score, this weight times how far up the upper half
            of its class's natural clips a clip's statistic lies (0 at their median, 1 beyond them all;
            :class:`OverConfidence`'s ``rank_weight``): examples just short of the quantile count too.
        bootstrap: resamples of the 95% bootstrap interval over test clips of the ROC-AUC (mean over seeds) of the
            trained CNN and of the fused detector (the rule chosen on val when there is one, else every fusion
            column); 0 for none.
        batch_size: clips per victim call.
        victims: source name -> the victim checkpoint its clips were made against, for sources that do not say
            (an external set of clips made elsewhere: ``ExternalDetectionDataModule``); every clip of such a
            source is scored with that victim.
        wandb: one W&B run for the stage (offline unless ``WANDB_MODE`` says otherwise): its ROC and DET figures
            and the results as a table. The PNGs are written into ``out_dir`` either way.
        device: ``auto`` (CUDA when available), ``cpu`` or ``cuda:N``.
        out_dir: folder of the runs, tables and figures.
        title: heading of the Markdown results.
    """
    spec = read_grid([grid] if isinstance(grid, str) else grid)
    conditions = chosen_conditions(spec, tests, grid)
    fused_level = snr_db[0] if fuse_snr_db is None else fuse_snr_db
    check_fusion(spec, fuse_with, fused_level, snr_db, splits, grid)
    wanted = sorted({member for members in conditions.values() for member in members})
    sources = {name: load_source(source) for name, source in grid_sources(spec["sources"], spec["extra_sources"]).items()}
    for name in wanted:
        sources[name].prepare_data()  # builds or resumes the corpora, as the grid does before training
    items = {name: victim_items(name, sources[name], splits, victim=victims.get(name)) for name in wanted}
    device = resolve_device(device)
    loaded: dict[str, Victim] = {}
    out = Path(out_dir)
    print(f"noise flooding: {len(snr_db)} noise levels x {len(seeds)} seeds on {sum(len(clip_paths(i)) for i in items.values())} "
          f"clips of {wanted}", flush=True)
    results, curves = flooding_runs(out, items, conditions, loaded, snr_db, seeds, draws, batch_size, device)
    kinds = {(TRAIN, c): row_kind(set(), set(members), c in spec["controls"]) for c, members in conditions.items()}
    columns = [column_name(level) for level in snr_db]
    intervals: dict[tuple[str, str, str], tuple[float, float]] = {}  # with fuse_with only
    if fuse_with:
        print(f"noise flooding: fusing with the trained detectors of {sorted(fuse_with)}", flush=True)
        over = None if over_confidence_quantile is None else over_confidence_scores(
            items, sources, loaded, over_confidence_quantile, batch_size, device, over_confidence_statistic,
            over_confidence_rank_weight)
        fused = fuse_detectors(spec, conditions, sources, items, loaded, fuse_with, fused_level, fusion,
                               choose_fusion_on_val, seeds, draws, bootstrap, batch_size, device, out, over)
        results += fused.results
        columns += fused.columns
        intervals = fused.intervals
        kinds.update(row_kinds(sources, spec["train"], conditions, fused.pairs, spec["controls"]))
    rows = sorted(kinds, key=lambda row: (row[0] != TRAIN, kinds[row] == "control"))
    table = ResultsTable(results, kinds, columns, rows, intervals)
    paths = table.write(out, title)
    figures = []
    for level, chosen in curves.items():
        figure_title = f"{column_name(level)} (seed {seeds[0]})"
        figures.append(save_roc_figure(chosen, out / f"roc_{level:g}dB.png", title=figure_title))
        figures.append(save_det_figure(chosen, out / f"det_{level:g}dB.png", title=figure_title))
    log_results_stage("noise-flooding", table, figures, out, wandb, {"title": title, "columns": table.features})
    rank_zero_info(f"\n{table.markdown('test/auroc')}\n\nresults: {paths['markdown']} and {paths['csv']}")
    return table


def chosen_conditions(spec: dict[str, Any], tests: list[str] | None, grid: str | list[str]) -> dict[str, list[str]]:
    """The grid's test conditions to score (``tests``, or all of them)."""
    conditions: dict[str, list[str]] = spec["test"]
    unknown = set(tests or []) - set(conditions)
    if unknown:
        raise ValueError(f"{grid} has no test conditions {sorted(unknown)} (has {sorted(conditions)})")
    return {name: members for name, members in conditions.items() if tests is None or name in tests}


def check_fusion(spec: dict[str, Any], fuse_with: dict[str, str], fused_level: float, snr_db: list[float],
                 splits: list[str], grid: str | list[str]) -> None:
    """Refuse fusion settings that cannot work, before any scoring."""
    if fuse_with and splits != ["test"]:
        raise ValueError(f"fuse_with needs splits: [test] (the trained detectors saw the others), got {splits}")
    if fuse_with and fused_level not in snr_db:
        raise ValueError(f"fuse_snr_db {fused_level} is not one of snr_db {snr_db}")
    unknown_trains = set(fuse_with) - set(spec["train"])
    if unknown_trains:
        raise ValueError(f"fuse_with names train conditions {sorted(unknown_trains)} that {grid} lacks (has {sorted(spec['train'])})")


def flooding_runs(
    out: Path,
    items: dict[str, dict[str, list[tuple[str, int]]]],
    conditions: dict[str, list[str]],
    loaded: dict[str, Victim],
    snr_db: list[float],
    seeds: list[int],
    draws: int,
    batch_size: int,
    device: torch.device,
) -> tuple[list[RunResult], dict[float, dict[str, tuple[torch.Tensor, torch.Tensor]]]]:
    """Noise flooding alone at every level and seed: the results, and each level's ROC curves of the first seed."""
    results, curves = [], {}
    for level in snr_db:
        for seed in seeds:
            run_dir = out / "runs" / column_name(level) / f"seed{seed}"
            print(f"noise flooding: {column_name(level)}, seed {seed}", flush=True)
            record = run_one(run_dir, items, conditions, loaded, level, draws, seed, batch_size, device)
            for test_name in conditions:
                results.append(RunResult(TRAIN, test_name, column_name(level), seed, record["tests"][test_name]))
            if seed == seeds[0]:
                saved = torch.load(run_dir / "curves.pt", weights_only=True)
                curves[level] = {f"-> {name}": saved[name] for name in conditions}
    return results, curves


@dataclass
class FusedResults:
    """The trained detectors' columns of the table: alone, fused by each rule, and (optionally) the rule chosen on val."""

    results: list[RunResult]
    columns: list[str]
    intervals: dict[tuple[str, str, str], tuple[float, float]]
    pairs: list[tuple[str, str]]


def fuse_detectors(
    spec: dict[str, Any],
    conditions: dict[str, list[str]],
    sources: dict[str, Any],
    items: dict[str, dict[str, list[tuple[str, int]]]],
    loaded: dict[str, Victim],
    fuse_with: dict[str, str],
    fused_level: float,
    fusion: list[str],
    choose_fusion_on_val: bool,
    seeds: list[int],
    draws: int,
    bootstrap: int,
    batch_size: int,
    device: torch.device,
    out: Path,
    over: dict[str, torch.Tensor] | None = None,
) -> FusedResults:
    """Score the trained detectors of ``fuse_with`` alone and fused with noise flooding at ``fused_level`` (and,
    with ``over``, each source's over-confidence scores, added to every fused score)."""
    alone_column = "trained CNN"
    suffix = OVER_CONFIDENCE_SUFFIX if over is not None else ""
    fused_columns = {rule: FUSED_COLUMNS[rule].format(column_name(fused_level)) + suffix for rule in fusion}
    columns = [alone_column, *fused_columns.values()]
    checkpoints = {(train_name, seed): pattern.format(seed=seed) for train_name, pattern in fuse_with.items() for seed in seeds}
    detectors = load_detectors(checkpoints, device)
    trained = trained_scores(detectors, {name: clip_paths(by_victim) for name, by_victim in items.items()}, device, batch_size)
    flooding_by_seed = {seed: torch.load(out / "runs" / column_name(fused_level) / f"seed{seed}" / "scores.pt",
                                         weights_only=True) for seed in seeds}
    val_rules: dict[tuple[str, int], str] = {}
    references: dict[tuple[str, int], NormalScores] = {}
    chosen_column = CHOSEN_COLUMN.format(column_name(fused_level)) + suffix
    if choose_fusion_on_val or "calibrated" in fusion:  # both need the validation clips' scores
        val_scores = validation_scores({name: spec["train"][name] for name in fuse_with}, sources, detectors, loaded,
                                       fused_level, draws, batch_size, device, out)
        references = normal_references(val_scores)
    if choose_fusion_on_val:
        val_rules = choose_fusion_rules(val_scores, references, fusion, out)
        columns.append(chosen_column)
    # Bootstrap intervals for the CNN alone and the fused detector of record (each costs about 0.4 s).
    interval_columns = {alone_column, chosen_column} if val_rules else {alone_column, *fused_columns.values()}
    results: list[RunResult] = []
    cell_scores: dict[tuple[str, str, str], list[torch.Tensor]] = defaultdict(list)  # one entry per seed
    cell_labels: dict[tuple[str, str], torch.Tensor] = {}
    for (train_name, seed), alone_by_source in trained.items():
        flooding = flooding_by_seed[seed]
        for test_name, members in conditions.items():
            labels = torch.cat([flooding[m]["labels"] for m in members])
            alone = torch.cat([alone_by_source[m] for m in members])
            flooded = torch.cat([flooding[m]["scores"] for m in members])
            cells = fused_cells(alone, flooded, labels, fusion, alone_column, fused_columns,
                                (chosen_column, val_rules[train_name, seed]) if val_rules else None,
                                references.get((train_name, seed)),
                                None if over is None else torch.cat([over[m] for m in members]))
            for column, scores, values in cells:
                results.append(RunResult(train_name, test_name, column, seed, values))
                if bootstrap and column in interval_columns:
                    cell_scores[train_name, test_name, column].append(scores)
            cell_labels[train_name, test_name] = labels  # the same clips, in the same order, for every seed
    intervals = {cell: seed_mean_auroc_interval(torch.stack(scores), cell_labels[cell[:2]], bootstrap)
                 for cell, scores in cell_scores.items()}
    pairs = [(train_name, test_name) for train_name in fuse_with for test_name in conditions]
    return FusedResults(results, columns, intervals, pairs)


def fused_cells(
    alone: torch.Tensor,
    flooded: torch.Tensor,
    labels: torch.Tensor,
    fusion: list[str],
    alone_column: str,
    fused_columns: dict[str, str],
    chosen: tuple[str, str] | None,
    normal: NormalScores | None = None,
    over: torch.Tensor | None = None,
) -> list[tuple[str, torch.Tensor, dict[str, float]]]:
    """``(column, scores, metrics)`` of one detector on one test condition: alone, fused by each rule and, with
    ``chosen`` (column, rule), the rule chosen on val (a repeat of that rule's scores and metrics); ``normal``: the
    detector's scores on normal validation clips, for the calibrated rule; ``over``: over-confidence scores (flags, 0 or
    1, plus any rank term), added to every fused score so that a flagged clip ranks above every unflagged one."""
    fused = {rule: FUSION_RULES[rule](alone, flooded, normal) + (0 if over is None else over) for rule in fusion}
    by_rule = {rule: evaluate(scores, labels)[0] for rule, scores in fused.items()}
    cells = [(alone_column, alone, evaluate(alone, labels)[0])]
    cells += [(column, fused[rule], by_rule[rule]) for rule, column in fused_columns.items()]
    if chosen is not None:
        column, rule = chosen
        cells.append((column, fused[rule], by_rule[rule]))
    return cells


OVER_CONFIDENCE_SUFFIX = ", over-confident clips flagged"


def over_confidence_scores(
    items: dict[str, dict[str, list[tuple[str, int]]]],
    sources: dict[str, Any],
    victims: dict[str, Victim],
    quantile: float,
    batch_size: int,
    device: torch.device,
    statistic: Statistic = "margin",
    rank_weight: float = 0.0,
) -> dict[str, torch.Tensor]:
    """Per source, each clip's over-confidence score (its flag, 1 or 0, plus ``rank_weight`` times its rank; in
    scoring order) from :class:`OverConfidence`, fitted
    for each keyword victim on the validation clips of the clean corpus its sets attacked (read once per victim);
    clips of a recogniser, or made against a victim that no set with a clean corpus names, score 0 (noise made to
    match another set is checked with that set's victim)."""
    clean: dict[str, Any] = {}  # victim checkpoint -> the clean corpus its sets attacked
    for name in items:
        for corpus in [*getattr(sources[name], "test_sets", []), *getattr(sources[name], "train_sets", [])]:
            if getattr(corpus, "source", None) is not None and hasattr(corpus.source, "attack_sources"):
                clean.setdefault(str(corpus.victim), corpus.source)
    checks: dict[str, OverConfidence] = {}
    for checkpoint, source in clean.items():
        if checkpoint not in victims:
            victims[checkpoint] = load_victim(checkpoint, device)
        if isinstance(victims[checkpoint], ClassifierVictim):
            checks[checkpoint] = OverConfidence(victims[checkpoint], validation_clips(source), quantile, statistic=statistic,
                                                 rank_weight=rank_weight)
    flags = {}
    for name, by_victim in items.items():
        flags[name] = torch.cat([score_clips(checks[checkpoint].score, clips, batch_size)[0] if checkpoint in checks
                                 else torch.zeros(len(clips)) for checkpoint, clips in by_victim.items()])
    return flags


def validation_scores(
    conditions: dict[str, list[str]],
    sources: dict[str, Any],
    detectors: dict[tuple[str, int], DetectorModule],
    victims: dict[str, Victim],
    snr_db: float,
    draws: int,
    batch_size: int,
    device: torch.device,
    out: Path,
) -> dict[tuple[str, int], tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    """Per fused detector ``(train condition, seed)``: the CNN's scores, noise flooding's scores and the labels of
    the validation split of its train condition (``conditions``: name -> sources). The noise-flooding scores of
    those clips are kept (and reused) beside the test runs."""
    members = sorted({member for names in conditions.values() for member in names})
    items = {name: victim_items(name, sources[name], ["val"], "train_sets") for name in members}
    trained = trained_scores(detectors, {name: clip_paths(by_victim) for name, by_victim in items.items()}, device, batch_size)
    scores = {}
    for seed in sorted({seed for _, seed in detectors}):
        run_dir = out / "runs" / column_name(snr_db) / f"seed{seed}-val"
        run_one(run_dir, items, conditions, victims, snr_db, draws, seed, batch_size, device)
        flooding = torch.load(run_dir / "scores.pt", weights_only=True)
        for train_name, names in conditions.items():
            scores[train_name, seed] = (torch.cat([trained[train_name, seed][m] for m in names]),
                                        torch.cat([flooding[m]["scores"] for m in names]),
                                        torch.cat([flooding[m]["labels"] for m in names]))
    return scores


def normal_references(
    val_scores: dict[tuple[str, int], tuple[torch.Tensor, torch.Tensor, torch.Tensor]],
) -> dict[tuple[str, int], NormalScores]:
    """Each fused detector's two scores on the normal clips (label 0) of its validation split."""
    return {key: NormalScores(alone[labels == 0], flooded[labels == 0]) for key, (alone, flooded, labels) in val_scores.items()}


def choose_fusion_rules(
    val_scores: dict[tuple[str, int], tuple[torch.Tensor, torch.Tensor, torch.Tensor]],
    references: dict[tuple[str, int], NormalScores],
    rules: list[str],
    out: Path,
) -> dict[tuple[str, int], str]:
    """Per fused detector, the rule of ``rules`` with the best ROC-AUC on its validation split (written to
    ``fusion_choices.json``)."""
    chosen, record = {}, {}
    for (train_name, seed), (alone, flooded, labels) in val_scores.items():
        chosen[train_name, seed], aurocs = choose_fusion(rules, alone, flooded, labels, references[train_name, seed])
        record[f"{train_name} seed{seed}"] = {"rule": chosen[train_name, seed], "val/auroc": aurocs}
    write_json_atomic(out / "fusion_choices.json", record)
    rank_zero_info(f"fusion rules chosen on the validation splits: {json.dumps(record, indent=1)}")
    return chosen


def run_one(
    run_dir: Path,
    items: dict[str, dict[str, list[tuple[str, int]]]],
    conditions: dict[str, list[str]],
    victims: dict[str, Victim],
    snr_db: float,
    draws: int,
    seed: int,
    batch_size: int,
    device: torch.device,
) -> dict[str, Any]:
    """Score every source once at one noise level and seed, then each test condition; skipped when done before."""
    clips = json.dumps(items, sort_keys=True).encode()
    settings = {"snr_db": snr_db, "draws": draws, "seed": seed, "clips_sha256": hashlib.sha256(clips).hexdigest()}
    results_path = run_dir / "results.json"
    if results_path.is_file() and (run_dir / "curves.pt").is_file() and (run_dir / "scores.pt").is_file():
        record = json.loads(results_path.read_text())
        if record.get("settings") == settings and set(conditions) <= set(record["tests"]):
            rank_zero_info(f"{run_dir}: done before, skipped")
            return record
    scored: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
    for name, by_victim in items.items():
        parts = []
        for checkpoint, clips_of_victim in by_victim.items():
            if checkpoint not in victims:
                victims[checkpoint] = load_victim(checkpoint, device)
            flooding = NoiseFlooding(victims[checkpoint], snr_db, draws, seed)
            parts.append(score_clips(flooding.score, clips_of_victim, batch_size))
        scored[name] = (torch.cat([s for s, _ in parts]), torch.cat([label for _, label in parts]))
    record: dict[str, Any] = {"settings": settings, "tests": {}}
    saved_curves = {}
    for test_name, members in conditions.items():
        scores = torch.cat([scored[m][0] for m in members])
        labels = torch.cat([scored[m][1] for m in members])
        record["tests"][test_name], saved_curves[test_name] = evaluate(scores, labels)
    run_dir.mkdir(parents=True, exist_ok=True)
    torch.save(saved_curves, run_dir / "curves.pt")
    # Per-clip scores, for fusing with trained detectors or any other analysis.
    torch.save({name: {"paths": clip_paths(items[name]), "scores": s, "labels": label} for name, (s, label) in scored.items()},
               run_dir / "scores.pt")
    write_json_atomic(results_path, record)
    return record


def main(args: list[str] | None = None) -> ResultsTable:
    """Parse a noise-flooding YAML (jsonargparse: ``-c``, ``--help``) and run it."""
    return run_command(run_noise_flooding, "lit-app noise-flooding", args)


if __name__ == "__main__":
    main(sys.argv[1:])
