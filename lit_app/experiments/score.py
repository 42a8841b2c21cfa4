"""Is this clip adversarial? Score WAV files with a trained detector, noise flooding, or both fused.

    lit-app score --detector runs/detector-grid-demo/runs/black/IMFCC/seed0/checkpoints/best.ckpt \
        --inputs '[clips/, more.wav, list.csv]' --out scores.csv
    lit-app score --victim runs/kws-demo/checkpoints/best.ckpt --inputs '[clips/]'        # noise flooding
    lit-app score --detector D.ckpt --victim V.ckpt --fusion mean --inputs '[clips/]'     # fused

The CSV has one row per clip: ``path, score, decision, threshold``. A detector's threshold is the one chosen on
its validation clips when it was trained (stored in its checkpoint; 0.5 for checkpoints written before); noise
flooding and the fused detectors decide at 0.5, as the noise-flooding stage reports them. Clips are read,
batched and scored in input order exactly as the grid and the noise-flooding stage do, so the scores of the
same clips, checkpoint and ``batch_size`` are theirs.
"""

from __future__ import annotations

import csv
import os
import sys
from pathlib import Path
from typing import Any, Literal

import torch

from lit_app.advsets.detection import collate_detection
from lit_app.audio.io import STRICT, AudioError, read_audio
from lit_app.device import resolve_device

COLUMNS = ["path", "score", "decision", "threshold"]


def input_paths(inputs: list[str]) -> list[Path]:
    """The clips of ``inputs``, in order: a WAV file; every ``*.wav`` below a folder (sorted); or a CSV list with a
    ``path`` column (relative paths are relative to the CSV's folder)."""
    paths: list[Path] = []
    for entry in inputs:
        item = Path(entry)
        if item.is_dir():
            found = sorted(item.rglob("*.wav"))
            if not found:
                raise FileNotFoundError(f"{item}: no .wav files in this folder. Point --inputs at WAVs, a folder or a CSV.")
            paths += found
        elif item.suffix.lower() == ".csv" and item.is_file():
            with item.open(newline="") as handle:
                reader = csv.DictReader(handle)
                if "path" not in (reader.fieldnames or []):
                    raise ValueError(f"{item}: a clip list needs a 'path' column (has {reader.fieldnames}).")
                paths += [item.parent / row["path"] for row in reader]
        elif item.is_file():
            paths.append(item)
        else:
            raise FileNotFoundError(f"{item}: no such file or folder. Give WAV files, folders of WAVs or CSV lists.")
    return paths


def read_clips(paths: list[Path], skip_bad_files: bool) -> tuple[list[tuple[Path, torch.Tensor]], list[str]]:
    """The readable clips ``(path, waveform)`` (read strictly: never resampled) and, with ``skip_bad_files``, the
    one-line reason each other file was skipped."""
    clips, skipped = [], []
    for path in paths:
        try:
            clips.append((path, read_audio(path, STRICT)))
        except AudioError as err:
            if not skip_bad_files:
                raise
            skipped.append(str(err))
    return clips, skipped


class Scorer:
    """Scores of ``[batch, samples]`` clips by a detector, noise flooding with a victim, or both fused.

    Args:
        detector: a detector checkpoint (any the app writes: ``lit-app fit`` or the grid).
        victim: the victim checkpoint the clips may have been made against (noise flooding).
        flooding_snr_db, flooding_draws, flooding_seed: noise flooding's settings (as the noise-flooding stage).
        fusion: with both, how their scores combine (the noise-flooding stage's rules).
        device: a torch device.
    """

    def __init__(self, detector: str | None, victim: str | None, flooding_snr_db: float, flooding_draws: int,
                 flooding_seed: int, fusion: str, device: torch.device) -> None:
        from lit_app.attacks.victims import load_victim
        from lit_app.checkpoints import load_module
        from lit_app.defences import NoiseFlooding
        from lit_app.models.detector import DetectorModule

        if detector is None and victim is None:
            raise ValueError("lit-app score needs --detector (a trained detector), --victim (noise flooding) or both")
        self.device = device
        self.detector = None if detector is None else load_module(detector, DetectorModule, map_location=device).eval()
        self.flooding = None if victim is None else NoiseFlooding(load_victim(victim, device), flooding_snr_db,
                                                                   flooding_draws, flooding_seed)
        self.fusion = fusion

    @property
    def threshold(self) -> float:
        """The decision threshold: the detector's own when it scores alone, else noise flooding's 0.5."""
        from lit_app.defences import NoiseFlooding

        return self.detector.threshold if self.flooding is None else NoiseFlooding.threshold

    @torch.no_grad()
    def __call__(self, audio: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        from lit_app.experiments.noise_flooding import FUSION_RULES

        alone = None if self.detector is None else self.detector.score(audio.to(self.device), lengths.to(self.device)).cpu()
        flooded = None if self.flooding is None else self.flooding.score(audio, lengths)
        if flooded is None:
            return alone
        return flooded if alone is None else FUSION_RULES[self.fusion](alone, flooded)


def score(
    inputs: str | list[str],
    detector: str | None = None,
    victim: str | None = None,
    flooding_snr_db: float = 15.0,
    flooding_draws: int = 8,
    flooding_seed: int = 0,
    fusion: Literal["max", "mean"] = "max",
    threshold: float | None = None,
    skip_bad_files: bool = False,
    batch_size: int = 64,
    device: str = "auto",
    out: str = "scores.csv",
) -> list[dict[str, Any]]:
    """Score clips as normal or adversarial; write a CSV of path, score, decision and threshold.

    Args:
        inputs: a WAV file, a folder of WAVs (searched recursively) or a CSV list with a ``path`` column, or a list
            of these (``'[a.wav, clips/, list.csv]'``).
        detector: checkpoint of a trained detector (``lit-app fit`` with a detector config, or a grid run's
            ``checkpoints/best.ckpt``).
        victim: checkpoint of the victim the clips were made against: scores with noise flooding, alone or
            fused with ``detector``.
        flooding_snr_db: noise level of noise flooding, dB.
        flooding_draws: noisy copies per clip.
        flooding_seed: noise seed.
        fusion: with both ``detector`` and ``victim``: ``max`` (flagged when either flags) or ``mean``.
        threshold: decide at this score instead of the stored one.
        skip_bad_files: list unreadable or invalid files in the output's ``.skipped.txt`` instead of stopping.
        batch_size: clips per batch (the grid's and noise-flooding stage's ``batch_size`` reproduce their scores).
        device: ``auto`` (CUDA when available), ``cpu`` or ``cuda:N``.
        out: the CSV to write.
    """
    from rich.progress import Progress

    scorer = Scorer(detector, victim, flooding_snr_db, flooding_draws, flooding_seed, fusion, resolve_device(device))
    cut = scorer.threshold if threshold is None else threshold
    clips, skipped = read_clips(input_paths([inputs] if isinstance(inputs, str) else inputs), skip_bad_files)
    rows = []
    with Progress(disable=bool(os.environ.get("CI")) or not sys.stderr.isatty(), transient=True) as progress:
        task = progress.add_task("scoring", total=len(clips))
        for start in range(0, len(clips), batch_size):
            chunk = clips[start : start + batch_size]
            batch = collate_detection([(wave, 0) for _, wave in chunk])
            for (path, _), value in zip(chunk, scorer(batch.audio, batch.lengths).tolist()):
                rows.append({"path": str(path), "score": value, "decision": "adversarial" if value >= cut else "normal",
                             "threshold": cut})
            progress.advance(task, len(chunk))
    write_scores(Path(out), rows, skipped)
    flagged = sum(row["decision"] == "adversarial" for row in rows)
    print(f"{len(rows)} clips scored, {flagged} adversarial at threshold {cut:.4f}"
          + (f", {len(skipped)} skipped" if skipped else "") + f": {out}")
    return rows


def write_scores(out: Path, rows: list[dict[str, Any]], skipped: list[str]) -> None:
    """The CSV (written whole, then renamed into place) and, when files were skipped, ``<out>.skipped.txt``."""
    out.parent.mkdir(parents=True, exist_ok=True)
    part = out.with_name(f".{out.name}.part")
    with part.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    os.replace(part, out)
    if skipped:
        out.with_name(f"{out.name}.skipped.txt").write_text("\n".join(skipped) + "\n")
