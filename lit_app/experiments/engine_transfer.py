"""Leave one engine out: does a keyword victim understand a speech engine it never heard?

For each engine of the synthetic corpus, a victim is trained on the others (their clips shared equally between the
engines, not between their voices, or espeak-ng's hundreds of voices would speak nearly every clip; never on
another engine of the same program: holding festival out holds out its accented voices too) and tested twice: on
its own corpus's unseen voices, and on every voice of the engine it never heard, keywords only. Each variant
(overlays on the victim config: augmentation, SpecAugment, ...) trains its own victims, so the table shows what
each change does to the held-out engines.

Every run is ``lit-app fit`` and ``lit-app test`` on the victim config plus a generated overlay kept in the run
folder, so each number can be reproduced with the app's own commands. Finished runs are skipped and an interrupted
fit resumes from its last checkpoint: run the same command again to continue.
"""

from __future__ import annotations

import json
import statistics
from pathlib import Path
from typing import Any

import yaml

from lit_app.data.synth.tts import ENGINE_FAMILY, ENGINES
from lit_app.data.vocab import SILENCE, UNKNOWN
from lit_app.experiments.results_table import mean_std

TRAINED = "results.json"  # the victim's test on its own unseen voices: written after fit and test
HELD_OUT = "held_out.json"  # its test on the engine it never heard


def run_engine_transfer(
    victim_config: str = "configs/kws/demo.yaml",
    engines: list[str] = ["espeak", "flite", "festival"],
    hold_out: list[str] | None = None,
    variants: dict[str, list[str]] = {"plain": []},
    seeds: list[int] = [0],
    held_out_clips_per_keyword: int = 100,
    trainer_configs: list[str] = ["configs/trainer/cpu.yaml", "configs/logger/csv.yaml"],
    data_dir: str = "data/engine-transfer",
    out_dir: str = "runs/engine-transfer-demo",
) -> list[dict[str, Any]]:
    """Train a keyword victim without each engine in turn and test it on that engine.

    Args:
        victim_config: the keyword victim's config (model, trainer, corpus sizes); its corpus is rebuilt without
            the held-out engine, in ``data_dir``.
        engines: the corpus's engines (``espeak``, ``flite``, ``festival``, ``festival_accented``).
        hold_out: the engines held out in turn, each by its own victims, with every engine of the same program
            (festival and its accented voices); ``None``: every one of ``engines``.
        variants: name -> config overlays applied after ``victim_config`` (``[]``: the victim as configured).
        seeds: training seeds (``seed_everything``); each cell is the mean and spread over them.
        held_out_clips_per_keyword: clips of each keyword in a held-out engine's test corpus (every voice of it).
        trainer_configs: presets applied to every fit and test (CPU trainer, CSV logger).
        data_dir: where the training corpora (named by their engines, ``espeak-flite``) and the held-out test
            corpora (``test-<engine>``) go.
        out_dir: run folders (``runs/<variant>/without-<engine>/seed<k>``), ``engine_transfer.md`` and ``.json``.
    """
    unknown = sorted(set(engines) - set(ENGINES))
    if unknown or len(engines) < 2:
        raise ValueError(f"engines must be two or more of {ENGINES}, got {engines}")
    if not variants or not seeds:
        raise ValueError("give at least one variant and one seed")
    hold_out = list(engines) if hold_out is None else hold_out
    if not hold_out or not set(hold_out) <= set(engines):
        raise ValueError(f"hold_out must name some of engines {engines}, got {hold_out}")
    for path in [victim_config, *trainer_configs, *(p for overlays in variants.values() for p in overlays)]:
        if not Path(path).is_file():
            raise FileNotFoundError(f"{path}: no such config (run lit-app from the repository root)")
    trained_on = {engine: heard_without(engines, engine) for engine in hold_out}
    for engine, others in trained_on.items():
        if not others:
            raise ValueError(f"holding out {engine} (and every engine of its program) leaves nothing of {engines}")
    rows = []
    for variant, overlays in variants.items():
        for engine, others in trained_on.items():
            for seed in seeds:
                run = Path(out_dir) / "runs" / variant / f"without-{engine}" / f"seed{seed}"
                configs = [victim_config, *overlays, *trainer_configs]
                train_and_test(run, configs, others, engine, seed, data_dir, held_out_clips_per_keyword)
                own = json.loads((run / TRAINED).read_text())["metrics"]
                held_out = json.loads((run / HELD_OUT).read_text())["metrics"]["test/acc"]
                rows.append({"variant": variant, "held_out": engine, "trained_on": others, "seed": seed,
                             "own_voices_acc": own["test/acc"], "own_voices_keyword_acc": keyword_accuracy(own),
                             "held_out_keyword_acc": held_out, "run": str(run)})
                print(f"{variant}, without {engine}, seed {seed}: own unseen voices {own['test/acc']:.2%} "
                      f"(keywords {rows[-1]['own_voices_keyword_acc']:.2%}), {engine} keywords {held_out:.2%}",
                      flush=True)
    write_tables(Path(out_dir), rows, variants, hold_out)
    return rows


def heard_without(engines: list[str], engine: str) -> list[str]:
    """The engines a victim trains on when ``engine`` is held out: not it, nor any engine of the same program
    (festival's accented voices are festival)."""
    return [e for e in engines if ENGINE_FAMILY[e] != ENGINE_FAMILY[engine]]


def train_and_test(run: Path, configs: list[str], others: list[str], engine: str, seed: int, data_dir: str,
                   held_out_clips: int) -> None:
    """Fit (or resume) one victim, test it on its own unseen voices and on ``engine`` (``results.json`` and
    ``held_out.json`` in ``run``)."""
    from lit_app.cli import main

    run.mkdir(parents=True, exist_ok=True)
    training = write_overlay(run / "train.yaml", training_overlay(run, others, seed, data_dir))
    held_out = write_overlay(run / "held_out.yaml", held_out_overlay(run, engine, data_dir, held_out_clips))
    args = [arg for config in configs for arg in ("-c", config)]
    best = run / "checkpoints" / "best.ckpt"
    if not (run / TRAINED).exists():
        last = run / "checkpoints" / "last.ckpt"
        if not (best.exists() and not last.exists()):
            main(["fit", *args, "-c", str(training), *([f"--ckpt_path={last}"] if last.exists() else [])])
        last.unlink(missing_ok=True)  # fit is done: a rerun must not resume it
        main(["test", *args, "-c", str(training), f"--ckpt_path={best}"])
    if not (run / HELD_OUT).exists():
        main(["test", *args, "-c", str(training), "-c", str(held_out), f"--ckpt_path={best}"])


def training_overlay(run: Path, engines: list[str], seed: int, data_dir: str) -> dict[str, Any]:
    """The fit's changes to the victim config: a corpus of ``engines`` shared per engine, and this run's folders."""
    return {
        "seed_everything": seed,
        "trainer": {"default_root_dir": str(run), "callbacks": [
            {"class_path": "pytorch_lightning.callbacks.ModelCheckpoint",
             "init_args": {"dirpath": str(run / "checkpoints"), "filename": "best", "monitor": "val/acc", "mode": "max",
                           "save_last": True, "enable_version_counter": False}},
            {"class_path": "callbacks.ResultsFile", "init_args": {"path": str(run / TRAINED)}},
        ]},
        "data": {"init_args": {
            "root": f"{data_dir}/{'-'.join(sorted(engines))}",
            "synthesize": {"init_args": {"engines": sorted(engines), "engine_shares": "per_engine"}},
        }},
    }


def held_out_overlay(run: Path, engine: str, data_dir: str, clips_per_keyword: int) -> dict[str, Any]:
    """The held-out test's changes: every voice of ``engine`` speaking the keywords, nothing else."""
    return {
        "trainer": {"callbacks": [{"class_path": "callbacks.ResultsFile",
                                   "init_args": {"path": str(run / HELD_OUT)}}]},
        "data": {"init_args": {
            "root": f"{data_dir}/test-{engine}",
            "silence_percentage": 0.0,
            "unknown_percentage": 0.0,
            "synthesize": {"init_args": {"engines": [engine], "engine_shares": "per_voice",
                                         "clips_per_keyword": clips_per_keyword, "clips_per_other_word": 0,
                                         "val_voice_fraction": 0.0, "test_voice_fraction": 1.0}},
        }},
    }


def write_overlay(path: Path, overlay: dict[str, Any]) -> Path:
    path.write_text("# Written by lit-app engine-transfer; applied after the victim config and its variant.\n"
                    + yaml.safe_dump(overlay, sort_keys=False))
    return path


def keyword_accuracy(metrics: dict[str, float]) -> float:
    """Mean accuracy over the keyword classes (not ``_silence_`` or ``_unknown_``) of a test's per-class metrics:
    the share of keywords recognised when each keyword has as many test clips, as the synthetic corpora give it."""
    keywords = [v for k, v in metrics.items() if k.startswith("test/acc_") and k not in (f"test/acc_{SILENCE}",
                                                                                          f"test/acc_{UNKNOWN}")]
    return statistics.fmean(keywords)


def write_tables(out: Path, rows: list[dict[str, Any]], variants: dict[str, list[str]], held_out: list[str]) -> None:
    """``engine_transfer.json`` (every run) and ``engine_transfer.md`` (mean ± std per variant and held-out engine)."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "engine_transfer.json").write_text(json.dumps(rows, indent=2) + "\n")
    lines = ["| variant (overlays) | held-out engine | trained on | seeds | own unseen voices, 12 labels | their "
             "keywords | held-out engine's keywords |", "|---|---|---|---|---|---|---|"]
    for variant, overlays in variants.items():
        for engine in held_out:
            cell = [r for r in rows if r["variant"] == variant and r["held_out"] == engine]
            lines.append(f"| {variant} ({', '.join(overlays) or 'none'}) | {engine} | {', '.join(cell[0]['trained_on'])} "
                         f"| {len(cell)} | {spread([r['own_voices_acc'] for r in cell])} "
                         f"| {spread([r['own_voices_keyword_acc'] for r in cell])} "
                         f"| {spread([r['held_out_keyword_acc'] for r in cell])} |")
    (out / "engine_transfer.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines), flush=True)


def spread(values: list[float]) -> str:
    """Mean ± sample standard deviation, in percent (the mean alone for one value)."""
    mean, std = mean_std(values)
    return f"{mean:.2%}" if len(values) == 1 else f"{mean:.2%} ± {std:.2%}"
