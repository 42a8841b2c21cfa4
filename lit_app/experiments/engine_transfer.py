"""Leave one engine out: does a victim understand a speech engine it never heard?

For each engine of the synthetic corpus, a victim is trained on the others (their clips shared equally between the
engines, not between their voices, or espeak-ng's hundreds of voices would speak nearly every clip; never on
another engine of the same program: holding festival out holds out its accented voices too) and tested twice: on
its own corpus's unseen voices, and on every voice of the engine it never heard. A keyword victim is scored on
keywords (accuracy), DeepSpeech on sentences (character and word error rates). Each variant (overlays on the victim
config: augmentation, SpecAugment, ...) trains its own victims, so the table shows what each change does to the
held-out engines. Engines that no victim trains on (``outside_engines``: SVOX Pico, RHVoice) test every victim too:
voices that the recipes were never tuned on.

Every run is ``lit-app fit`` and ``lit-app test`` on the victim config plus a generated overlay kept in the run
folder, so each number can be reproduced with the app's own commands. Finished runs are skipped and an interrupted
fit resumes from its last checkpoint: run the same command again to continue.
"""

from __future__ import annotations

import json
import statistics
from pathlib import Path
from typing import Any, Literal

import yaml

from lit_app.data.synth.tts import ENGINE_FAMILY, ENGINES
from lit_app.data.vocab import SILENCE, UNKNOWN
from lit_app.experiments.results_table import mean_std

TRAINED = "results.json"  # the victim's test on its own unseen voices: written after fit and test
BY_ENGINE = "own_voices_by_engine.json"  # a keyword victim's own unseen voices' keywords recognised, engine by engine
HELD_OUT = "held_out.json"  # its test on the engine it never heard
OUTSIDE = "outside-{engine}.json"  # its test on an engine that no victim hears (``outside_engines``)
HELD_OUT_SENTENCE_SEED = 1  # the held-out sentences: mostly not the training corpus's (its seed is 0)
# Every voice of the held-out engine equally, in a random order: espeak-ng's 856 voices speak 100 clips of a keyword
# from all six of its English accents, not from 100 consecutive voices of one or two.
HELD_OUT_SHARES = "per_voice_shuffled"

Task = Literal["keywords", "sentences"]
OwnVoices = Literal["test", "validation"]
#: the run folder's suffix when the victim's test voices train (``own_voices: validation``)
TEST_VOICES_TRAIN = "-test-voices-train"


def run_engine_transfer(
    victim_config: str = "configs/kws/demo.yaml",
    engines: list[str] = ["espeak", "flite", "festival"],
    hold_out: list[str] | None = None,
    variants: dict[str, list[str]] = {"plain": []},
    seeds: list[int] = [0],
    own_voices: OwnVoices = "test",
    outside_engines: list[str] = [],
    held_out_clips_per_keyword: int = 100,
    held_out_sentences: int = 200,
    trainer_configs: list[str] = ["configs/trainer/cpu.yaml", "configs/logger/csv.yaml"],
    data_dir: str = "data/engine-transfer",
    out_dir: str = "runs/engine-transfer-demo",
) -> list[dict[str, Any]]:
    """Train a victim without each engine in turn and test it on that engine.

    Args:
        victim_config: the victim's config (model, trainer, corpus sizes): a keyword spotter or DeepSpeech; its
            corpus is rebuilt without the held-out engine, in ``data_dir``.
        engines: the corpus's engines (``espeak``, ``flite``, ``festival``, ``festival_accented``, and where installed
            ``festival_extra``, ``pico``, ``rhvoice``, ``mbrola_accented``, ``mbrola_british``, ``gnuspeech``,
            ``sam``).
        hold_out: the engines held out in turn, each by its own victims, with every engine of the same program
            (festival and its accented voices); ``None``: every one of ``engines``.
        variants: name -> config overlays applied after ``victim_config`` (``[]``: the victim as configured).
        seeds: training seeds (``seed_everything``); each cell is the mean and spread over them.
        own_voices: the victim's own unseen voices: its corpus's test voices (``test``), or its validation voices
            (``validation``: the corpus keeps no test voices, so they train too - more speakers to learn from -
            and the own-voice cells are measured on voices that also chose the checkpoint). The held-out engine's
            test is the same either way.
        outside_engines: engines that no victim trains on (none of ``engines``' programs), each tested by every
            victim like a held-out engine: ``pico``, ``rhvoice``, ``gnuspeech``, ``sam``.
        held_out_clips_per_keyword: clips of each keyword in a held-out engine's test corpus (every voice of it).
        held_out_sentences: sentences in a held-out engine's test corpus (DeepSpeech; every voice of it).
        trainer_configs: presets applied to every fit and test (CPU trainer, CSV logger).
        data_dir: where the training corpora (named by their engines, ``espeak-flite``, ``sentences-espeak-flite``)
            and the held-out test corpora (``held-out-<engine>``, ``sentences-held-out-<engine>``) go.
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
    heard_families = {ENGINE_FAMILY[engine] for engine in engines}
    outside = [e for e in outside_engines if e not in ENGINE_FAMILY or ENGINE_FAMILY[e] in heard_families]
    if outside:
        raise ValueError(f"outside_engines must be engines of {ENGINES} whose program is not one of engines' "
                         f"({sorted(heard_families)}), got {outside}")
    task = victim_task(victim_config)
    if task == "sentences" and "festival_accented" in engines:
        raise ValueError("festival_accented speaks the Speech Commands words only, not sentences: drop it from "
                         f"engines for the DeepSpeech victim of {victim_config}")
    held_out_size = held_out_clips_per_keyword if task == "keywords" else held_out_sentences
    trained_on = {engine: heard_without(engines, engine) for engine in hold_out}
    for engine, others in trained_on.items():
        if not others:
            raise ValueError(f"holding out {engine} (and every engine of its program) leaves nothing of {engines}")
    test_voices = own_voices == "test"
    suffix = "" if test_voices else TEST_VOICES_TRAIN
    rows = []
    for variant, overlays in variants.items():
        configs = [victim_config, *overlays, *trainer_configs]
        csv_logs = logs_to_csv(configs)
        for engine, others in trained_on.items():
            for seed in seeds:
                run = Path(out_dir) / "runs" / variant / f"without-{engine}{suffix}" / f"seed{seed}"
                train_and_test(run, configs, task, others, engine, seed, data_dir, held_out_size, csv_logs, own_voices,
                               outside_engines)
                own = json.loads((run / TRAINED).read_text())
                held_out = json.loads((run / HELD_OUT).read_text())["metrics"]
                run_scores = scores(task, own["metrics"], held_out, "val" if own["stage"] == "validate" else "test")
                for name in outside_engines:
                    metrics = json.loads((run / OUTSIDE.format(engine=name)).read_text())["metrics"]
                    run_scores |= {f"{name}_{key}": value for key, value in outside_scores(task, metrics).items()}
                by_engine = {} if task == "sentences" else {"own_voices_by_engine": own_by_engine(
                    run, training_root(task, others, data_dir, test_voices), own_voices)}
                rows.append({"variant": variant, "held_out": engine, "trained_on": others, "seed": seed,
                             "own_voices": own_voices, **run_scores, **by_engine, "run": str(run)})
                print(f"{variant}, without {engine}, seed {seed}: "
                      + ", ".join(f"{key} {value:.2%}" for key, value in run_scores.items()), flush=True)
    write_tables(Path(out_dir), rows, variants, hold_out, task, outside_engines)
    return rows


def victim_task(victim_config: str) -> Task:
    """``sentences`` for a DeepSpeech victim config, ``keywords`` for a keyword spotter's."""
    model = (yaml.safe_load(Path(victim_config).read_text()) or {}).get("model") or {}
    class_path = model.get("class_path", "") if isinstance(model, dict) else ""
    if class_path.endswith("DeepSpeechModule"):
        return "sentences"
    if class_path.endswith("KWSModule"):
        return "keywords"
    raise ValueError(f"{victim_config}: model.class_path is {class_path or 'missing'}; engine-transfer trains "
                     "lit_app.models.kws.KWSModule or lit_app.models.asr.DeepSpeechModule victims")


def scores(task: Task, own: dict[str, float], held_out: dict[str, float], stage: str = "test") -> dict[str, float]:
    """A run's table entries from its two tests' metrics (``own``: from ``test``, or with ``stage="val"`` from
    ``validate``, when the victim's own voices are its validation voices)."""
    if task == "keywords":
        return {"own_voices_acc": own[f"{stage}/acc"], "own_voices_keyword_acc": keyword_accuracy(own, stage),
                "held_out_keyword_acc": held_out["test/acc"]}
    return {"own_voices_cer": own[f"{stage}/cer"], "own_voices_wer": own[f"{stage}/wer"],
            "held_out_cer": held_out["test/cer"], "held_out_wer": held_out["test/wer"]}


def outside_scores(task: Task, metrics: dict[str, float]) -> dict[str, float]:
    """A test on an outside engine's table entries, named as a held-out engine's."""
    if task == "keywords":
        return {"keyword_acc": metrics["test/acc"]}
    return {"cer": metrics["test/cer"], "wer": metrics["test/wer"]}


def heard_without(engines: list[str], engine: str) -> list[str]:
    """The engines a victim trains on when ``engine`` is held out: not it, nor any engine of the same program
    (festival's accented voices are festival)."""
    return [e for e in engines if ENGINE_FAMILY[e] != ENGINE_FAMILY[engine]]


def train_and_test(run: Path, configs: list[str], task: Task, others: list[str], engine: str, seed: int,
                   data_dir: str, held_out_size: int, csv_logs: bool = False, own_voices: OwnVoices = "test",
                   outside_engines: list[str] = []) -> None:
    """Fit (or resume) one victim, test it on its own unseen voices, on ``engine`` and on each of
    ``outside_engines`` (``results.json``, ``held_out.json`` and ``outside-<engine>.json`` in ``run``); with
    ``csv_logs`` (the configs log to CSV) its metrics go to ``run/logs``. ``own_voices``: as
    :func:`run_engine_transfer`'s."""
    from lit_app.cli import main

    run.mkdir(parents=True, exist_ok=True)
    overlay = training_overlay(run, task, others, seed, data_dir, test_voices=own_voices == "test")
    if csv_logs:  # beside the run's checkpoints and results, as the grid's runs keep theirs
        overlay["trainer"]["logger"] = {"init_args": {"save_dir": str(run / "logs")}}
    training = write_overlay(run / "train.yaml", overlay)
    held_out = write_overlay(run / "held_out.yaml", held_out_overlay(run, task, engine, data_dir, held_out_size))
    args = [arg for config in configs for arg in ("-c", config)]
    best = run / "checkpoints" / "best.ckpt"
    if not (run / TRAINED).exists():
        last = run / "checkpoints" / "last.ckpt"
        if not (best.exists() and not last.exists()):
            main(["fit", *args, "-c", str(training), *([f"--ckpt_path={last}"] if last.exists() else [])])
        last.unlink(missing_ok=True)  # fit is done: a rerun must not resume it
        main(["test" if own_voices == "test" else "validate", *args, "-c", str(training), f"--ckpt_path={best}"])
    if not (run / HELD_OUT).exists():
        main(["test", *args, "-c", str(training), "-c", str(held_out), f"--ckpt_path={best}"])
    for name in outside_engines:
        results = OUTSIDE.format(engine=name)
        if not (run / results).exists():
            overlay = write_overlay(run / results.replace(".json", ".yaml"),
                                    held_out_overlay(run, task, name, data_dir, held_out_size, results))
            main(["test", *args, "-c", str(training), "-c", str(overlay), f"--ckpt_path={best}"])


def logs_to_csv(configs: list[str]) -> bool:
    """Whether the last of ``configs`` that sets ``trainer.logger`` sets a CSV logger (Lightning's or the app's)."""
    logger = None
    for path in configs:
        trainer = (yaml.safe_load(Path(path).read_text()) or {}).get("trainer") or {}
        if isinstance(trainer, dict) and "logger" in trainer:
            logger = trainer["logger"]
    return isinstance(logger, dict) and str(logger.get("class_path", "")).endswith("CSVLogger")


def training_overlay(run: Path, task: Task, engines: list[str], seed: int, data_dir: str,
                     test_voices: bool = True) -> dict[str, Any]:
    """The fit's changes to the victim config: a corpus of ``engines`` shared per engine (without test voices and
    sentences unless ``test_voices``: those voices train), and this run's folders."""
    monitor, mode = ("val/acc", "max") if task == "keywords" else ("val/cer", "min")
    synthesize: dict[str, Any] = {"engines": sorted(engines), "engine_shares": "per_engine"}
    if not test_voices:
        synthesize["test_voice_fraction"] = 0.0
        if task == "sentences":
            synthesize["test_sentence_fraction"] = 0.0
    return {
        "seed_everything": seed,
        "trainer": {"default_root_dir": str(run), "callbacks": [
            {"class_path": "callbacks.RunCheckpoint",  # in <default_root_dir>/checkpoints
             "init_args": {"filename": "best", "monitor": monitor, "mode": mode, "save_last": True,
                           "enable_version_counter": False}},
            {"class_path": "callbacks.ResultsFile", "init_args": {"path": str(run / TRAINED)}},
        ]},
        "data": {"init_args": {
            "root": training_root(task, engines, data_dir, test_voices),
            "synthesize": {"init_args": synthesize},
        }},
    }


def training_root(task: Task, engines: list[str], data_dir: str, test_voices: bool = True) -> str:
    """The training corpus's folder: named by its engines (``espeak-flite``, ``sentences-espeak-flite``), and
    ``-test-voices-train`` when its test voices train."""
    prefix = "" if task == "keywords" else "sentences-"
    return f"{data_dir}/{prefix}{'-'.join(sorted(engines))}{'' if test_voices else TEST_VOICES_TRAIN}"


def own_by_engine(run: Path, root: str, own_voices: OwnVoices = "test") -> dict[str, float]:
    """The keyword victim of ``run``'s share of keywords recognised on its own unseen voices (test or validation,
    as ``own_voices``) of corpus ``root``, engine by engine: how well the recipe hears an engine that trains.
    Kept in ``run`` (:data:`BY_ENGINE`) once measured."""
    kept = run / BY_ENGINE
    if kept.exists():
        return json.loads(kept.read_text())
    measured = keyword_accuracy_by_engine(run / "checkpoints" / "best.ckpt", Path(root),
                                          "testing" if own_voices == "test" else "validation")
    kept.write_text(json.dumps(measured, indent=2, sort_keys=True) + "\n")
    return measured


def keyword_accuracy_by_engine(checkpoint: Path, root: Path, split: str = "testing") -> dict[str, float]:
    """A keyword victim's mean accuracy over the keywords of each engine's clips in ``split`` of synthetic corpus
    ``root`` (its manifest names each clip's voice, ``<engine>:<name>``)."""
    import torch

    from lit_app.attacks import load_victim
    from lit_app.experiments.keyword_answers import in_batches, keyword_clips, mean_keyword_accuracy

    victim = load_victim(checkpoint)
    data = keyword_clips(root, victim.labels, split)
    answer = in_batches(victim.logits, data.waveforms).argmax(-1)
    engines = [voice.partition(":")[0] for voice in data.voices]
    measured = {}
    for engine in sorted(set(engines)):
        rows = torch.tensor([e == engine for e in engines])
        measured[engine] = mean_keyword_accuracy(answer[rows], data.target[rows], len(victim.labels))
    return measured


def held_out_overlay(run: Path, task: Task, engine: str, data_dir: str, size: int,
                     results_file: str = HELD_OUT) -> dict[str, Any]:
    """The held-out test's changes: every voice of ``engine`` speaking ``size`` clips of each keyword, nothing
    else, or ``size`` sentences (from another seed than the training corpus's); the metrics go to ``results_file``
    in ``run``."""
    results = {"callbacks": [{"class_path": "callbacks.ResultsFile", "init_args": {"path": str(run / results_file)}}]}
    if task == "sentences":
        return {"trainer": results, "data": {"init_args": {
            "root": f"{data_dir}/sentences-held-out-{engine}",
            "synthesize": {"init_args": {"engines": [engine], "engine_shares": HELD_OUT_SHARES, "num_sentences": size,
                                         "seed": HELD_OUT_SENTENCE_SEED,
                                         "val_sentence_fraction": 0.0, "test_sentence_fraction": 1.0,
                                         "val_voice_fraction": 0.0, "test_voice_fraction": 1.0}},
        }}}
    return {
        "trainer": results,
        "data": {"init_args": {
            "root": f"{data_dir}/held-out-{engine}",
            "silence_percentage": 0.0,
            "unknown_percentage": 0.0,
            "synthesize": {"init_args": {"engines": [engine], "engine_shares": HELD_OUT_SHARES,
                                         "clips_per_keyword": size, "clips_per_other_word": 0,
                                         "val_voice_fraction": 0.0, "test_voice_fraction": 1.0}},
        }},
    }


def write_overlay(path: Path, overlay: dict[str, Any]) -> Path:
    path.write_text("# Written by lit-app engine-transfer; applied after the victim config and its variant.\n"
                    + yaml.safe_dump(overlay, sort_keys=False))
    return path


def keyword_accuracy(metrics: dict[str, float], stage: str = "test") -> float:
    """Mean accuracy over the keyword classes (not ``_silence_`` or ``_unknown_``) of a test's (or a ``validate``
    run's, ``stage="val"``) per-class metrics: the share of keywords recognised when each keyword has as many
    clips, as the synthetic corpora give it."""
    keywords = [v for k, v in metrics.items() if k.startswith(f"{stage}/acc_")
                and k not in (f"{stage}/acc_{SILENCE}", f"{stage}/acc_{UNKNOWN}")]
    return statistics.fmean(keywords)


#: The keyword table's reference column (:func:`write_tables`).
REFERENCE = "that engine heard in training: its unseen voices' keywords"
#: Each task's table columns: heading and row key, all in the rows' percentages.
COLUMNS = {
    "keywords": (("own unseen voices, 12 labels", "own_voices_acc"), ("their keywords", "own_voices_keyword_acc"),
                 ("held-out engine's keywords", "held_out_keyword_acc")),
    "sentences": (("own unseen voices, CER", "own_voices_cer"), ("their WER", "own_voices_wer"),
                  ("held-out engine's CER", "held_out_cer"), ("its WER", "held_out_wer")),
}


def write_tables(out: Path, rows: list[dict[str, Any]], variants: dict[str, list[str]], held_out: list[str],
                 task: Task = "keywords", outside_engines: list[str] = []) -> None:
    """``engine_transfer.json`` (every run) and ``engine_transfer.md`` (mean ± std per variant and held-out engine).

    A keyword table's reference column follows its held-out cell: the same engine's unseen voices, heard by the
    variant's victims that held out another engine and so trained on this one ("-" when none did). Then one
    column per outside engine (its keywords recognised, or its CER).
    """
    out.mkdir(parents=True, exist_ok=True)
    (out / "engine_transfer.json").write_text(json.dumps(rows, indent=2) + "\n")
    columns = COLUMNS[task]
    outside_key = "keyword_acc" if task == "keywords" else "cer"
    outside = [(f"{name} (no victim heard it): {'keywords' if task == 'keywords' else 'CER'}",
                f"{name}_{outside_key}") for name in outside_engines]
    headings = ([heading for heading, _ in columns] + ([REFERENCE] if task == "keywords" else [])
                + [heading for heading, _ in outside])
    lines = ["| variant (overlays) | held-out engine | trained on | seeds | " + " | ".join(headings) + " |",
             "|---" * (4 + len(headings)) + "|"]
    for variant, overlays in variants.items():
        for engine in held_out:
            cell = [r for r in rows if r["variant"] == variant and r["held_out"] == engine]
            # Their own voices are the validation voices when the test voices trained.
            trained_on = ", ".join(cell[0]["trained_on"]) + (
                " (test voices too; own voices: validation)" if cell[0].get("own_voices") == "validation" else "")
            values = [spread([r[key] for r in cell]) for _, key in columns]
            if task == "keywords":
                heard = [r["own_voices_by_engine"][engine] for r in rows if r["variant"] == variant
                         and r["held_out"] != engine and engine in r.get("own_voices_by_engine", {})]
                values.append(spread(heard) if heard else "-")
            values += [spread([r[key] for r in cell]) for _, key in outside]
            lines.append(f"| {variant} ({', '.join(overlays) or 'none'}) | {engine} | {trained_on} "
                         f"| {len(cell)} | " + " | ".join(values) + " |")
    (out / "engine_transfer.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines), flush=True)


def spread(values: list[float]) -> str:
    """Mean ± sample standard deviation, in percent (the mean alone for one value)."""
    mean, std = mean_std(values)
    return f"{mean:.2%}" if len(values) == 1 else f"{mean:.2%} ± {std:.2%}"
