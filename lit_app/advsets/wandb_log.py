"""Weights & Biases view of adversarial corpora: the results table and clean/adversarial audio pairs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from lit_app.advsets.card import attack_summary
from lit_app.advsets.manifest import SPLITS
from lit_app.audio.io import STRICT, read_audio

RESULT_COLUMNS = ["corpus", "attack", "split", "examples", "success_rate", "mean_db_x_successful",
                  "mean_snr_db_successful", "median_queries"]
PAIR_COLUMNS = ["corpus", "split", "source", "clean_path", "perturbed_path", "source_label", "clean_prediction",
                "target", "perturbed_prediction", "success", "db_x", "snr_db", "queries"]


def results_table(corpora: dict[Path, list[dict[str, Any]]]) -> list[list[Any]]:
    """One row per corpus and split: success rate, distortion and queries."""
    data = []
    for root, rows in corpora.items():
        attack = next((r["attack"] for r in rows if r["attack"]), "")
        for split in SPLITS:
            s = attack_summary([r for r in rows if r["split"] == split])
            data.append([Path(root).name, attack, split, s["examples"], s["success_rate"], s["mean_db_x_successful"],
                         s["mean_snr_db_successful"], s["median_queries"]])
    return data


def example_pairs(root: Path, rows: list[dict[str, Any]], count: int) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """Up to ``count`` (clean row, perturbed row) pairs with the same source, successful ones and test clips first."""
    clean = {r["source_id"]: r for r in rows if r["kind"] == "clean"}
    perturbed = [r for r in rows if r["kind"] != "clean" and r["source_id"] in clean]
    perturbed.sort(key=lambda r: (not r["success"], SPLITS[::-1].index(r["split"]), r["id"]))
    pairs, seen = [], set()
    for row in perturbed:
        if row["source_id"] not in seen:
            seen.add(row["source_id"])
            pairs.append((clean[row["source_id"]], row))
        if len(pairs) == count:
            break
    return pairs


def log_corpora(logger: Any, corpora: dict[Path, list[dict[str, Any]]], pairs_per_corpus: int) -> None:
    """Log through a ``WandbLogger``: ``adversarial/results`` (per corpus and split), ``adversarial/examples``
    (one row per pair) and ``adversarial/audio`` (each pair's clean then perturbed clip, captioned).

    The audio goes through ``log_audio`` rather than table cells: W&B writes media files for it even offline,
    while audio cells of a run table are written only to an artifact.
    """
    logger.log_table(key="adversarial/results", columns=RESULT_COLUMNS, data=results_table(corpora))
    rows, clips, captions = [], [], []
    for root, corpus_rows in corpora.items():
        root = Path(root)
        for clean, perturbed in example_pairs(root, corpus_rows, pairs_per_corpus):
            rows.append([root.name, perturbed["split"], perturbed["source_id"], clean["path"], perturbed["path"],
                         clean["source_label"], clean["prediction"], perturbed["target"], perturbed["prediction"],
                         perturbed["success"], perturbed["db_x"], perturbed["snr_db"], perturbed["queries"]])
            clips += [read_audio(root / r["path"], STRICT).numpy() for r in (clean, perturbed)]
            captions += [f"{root.name} {clean['source_id']} clean: {clean['source_label']!r}, heard {clean['prediction']!r}",
                         f"{root.name} {perturbed['kind']} -> {perturbed['target']!r}: heard {perturbed['prediction']!r}, "
                         f"dB_x {perturbed['db_x']}, SNR {perturbed['snr_db']} dB"]
    if rows:
        logger.log_table(key="adversarial/examples", columns=PAIR_COLUMNS, data=rows)
        logger.log_audio(key="adversarial/audio", audios=clips, sample_rate=[16000] * len(clips), caption=captions)


def save_corpus_figures(root: Path, rows: list[dict[str, Any]], folder: Path, pairs: int) -> dict[str, Path]:
    """PNGs of one corpus into ``folder``: SNR and dB_x histograms of its successful examples, and for up to
    ``pairs`` examples the spectrograms of the clean clip, its perturbed version and the perturbation."""
    from lit_app.experiments.figures import save_histograms, save_pair_figure

    won = [r for r in rows if r["kind"] != "clean" and r["success"]]
    figures = {"histograms": save_histograms({"SNR (dB)": [r["snr_db"] for r in won], "dB_x": [r["db_x"] for r in won]},
                                             folder / "snr_db_x.png", f"{root.name}: successful examples")}
    for index, (clean, perturbed) in enumerate(example_pairs(root, rows, pairs)):
        title = (f"{root.name} {clean['source_id']}: {clean['source_label']!r} -> {perturbed['target']!r}, heard "
                 f"{perturbed['prediction']!r} (dB_x {perturbed['db_x']}, SNR {perturbed['snr_db']} dB)")
        figures[f"pair{index}"] = save_pair_figure(read_audio(root / clean["path"], STRICT),
                                                   read_audio(root / perturbed["path"], STRICT),
                                                   folder / f"pair{index}_spectrograms.png", title)
    return figures


def log_attack_sets(corpora: dict[Path, list[dict[str, Any]]], out_dir: Path, pairs_per_corpus: int, wandb: bool) -> None:
    """What ``lit-app generate`` shows: each corpus's figures in ``out_dir/<corpus>/`` and, in one W&B run per
    corpus, the same figures, the results table, the example table and the audio pairs (:func:`log_corpora`).
    A corpus whose figures are newer than its manifest was shown before and is skipped."""
    from lit_app.experiments.stage_log import StageLog

    for root, rows in corpora.items():
        root = Path(root)
        folder = out_dir / root.name
        histograms, manifest = folder / "snr_db_x.png", root / "manifest.csv"
        if histograms.is_file() and manifest.is_file() and histograms.stat().st_mtime >= manifest.stat().st_mtime:
            print(f"{root}: figures in {folder} (made before; no second W&B run)", flush=True)
            continue  # a rerun of the main job resumes: this corpus was shown already
        figures = save_corpus_figures(root, rows, folder, pairs_per_corpus)
        log = StageLog(root.name, "attack-set", folder, wandb, {"corpus": str(root)})
        log.images({f"figures/{name}": path for name, path in figures.items()})
        if log.run is not None:
            log_corpora(log, {root: rows}, pairs_per_corpus)
        log.finish()
        print(f"{root}: figures in {folder}", flush=True)
