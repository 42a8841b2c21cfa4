"""The adaptive attacker: a white-box attack that fools the victim *and* the detector, and what it leaves.

A detector is only as good as its showing against an attacker who knows it (Carlini & Wagner 2017,
"Adversarial examples are not easily detected"). :class:`DetectorAwareVictim` wraps a victim of
:mod:`lit_app.attacks` so that every gradient attack there (PGD, FGSM, C&W) becomes adaptive without a line
of its own: the wrapped loss adds the detector's cross-entropy toward *normal*, back-propagated through the
detector's feature front-end to the waveform, and a clip counts as reaching its target only when the
detector also calls it normal, so early stopping and C&W's bound shrinking wait for both.

:func:`run_adaptive` measures the effect: the same attack, with detector weights ``0`` (the plain attack the
detector was trained on) and higher, on clean test clips the detector never saw; for each weight the
victim's targeted success, the detection rate on successful examples, the share that fool both, and the
distortion it costs. Command line::

    lit-app adaptive -c configs/detector/adaptive_demo.yaml
    # (python -m lit_app.experiments.adaptive takes the same arguments)
"""

from __future__ import annotations

import json
import random
import statistics
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from lit_app.advsets.detection import collate_detection
from lit_app.attacks.base import Attack
from lit_app.attacks.victims import Encoded, Victim, load_victim
from lit_app.audio.io import STRICT, read_audio
from lit_app.base import LitAppDataModule
from lit_app.checkpoints import load_module
from lit_app.data.source_clip import SourceClip
from lit_app.defences import NoiseFlooding, OverConfidence
from lit_app.defences.over_confidence import Statistic, validation_clips
from lit_app.device import resolve_device
from lit_app.experiments.command import run_command
from lit_app.experiments.figures import save_curve_figure
from lit_app.experiments.noise_flooding import (
    CALIBRATED_THRESHOLD,
    FUSION_RULES,
    NormalScores,
    calibrated_max,
)
from lit_app.experiments.stage_log import StageLog
from lit_app.models.detector import DetectorModule

DETECTED = "[detected] "


class DetectorAwareVictim(Victim):
    """A victim seen through a detector: the attack must reach its target and look normal.

    Args:
        victim: the model under attack (see :func:`lit_app.attacks.victims.load_victim`).
        detector: a trained detector; frozen and moved to the victim's device.
        weight: weight of the detector's loss (cross-entropy toward *normal*) beside the victim's loss.
        threshold: a clip whose adversarial probability reaches this is detected.
        margin: push the detector's log-odds below ``-margin`` rather than just below 0, so the examples
            survive 16-bit rounding with some room.
        check: the over-confidence check beside the detector, for an attacker who knows it too.
        check_weight: weight of keeping the victim's confidence in the target (the check's statistic) below the
            natural median of that class, where the check neither flags nor ranks.
    """

    kind = "detector-aware"

    def __init__(self, victim: Victim, detector: DetectorModule, weight: float = 1.0, threshold: float = 0.5,
                 margin: float = 2.0, check: OverConfidence | None = None, check_weight: float = 0.0) -> None:
        if check_weight > 0 and check is None:
            raise ValueError("check_weight needs the over-confidence check (over_confidence_quantile) to steer by")
        self.check, self.check_weight = check, check_weight
        self.victim = victim
        self.module = victim.module
        self.detector = detector.eval().requires_grad_(False).to(victim.device)
        self.weight = weight
        self.threshold = threshold
        self.margin = margin

    def prepare(self, waveform: torch.Tensor) -> torch.Tensor:
        return self.victim.prepare(waveform)

    def normalise_target(self, target: str) -> str:
        return self.victim.normalise_target(target)

    def encode(self, targets: Sequence[str]) -> Encoded:
        return self.victim.encode(targets)

    def feasible(self, lengths: torch.Tensor, encoded: Encoded) -> torch.Tensor:
        return self.victim.feasible(lengths, encoded)

    def detector_log_odds(self, waveforms: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """The detector's ``log p(adversarial) - log p(normal)`` per clip (differentiable)."""
        logits = self.detector(waveforms, lengths.to(waveforms.device))
        return logits[:, 1] - logits[:, 0]

    def loss(self, waveforms: torch.Tensor, lengths: torch.Tensor, encoded: Encoded) -> torch.Tensor:
        # softplus(z + margin) is the cross-entropy toward "normal" of log-odds z, shifted by the margin.
        loss = self.victim.loss(waveforms, lengths, encoded)
        if self.weight > 0:
            loss = loss + self.weight * F.softplus(self.detector_log_odds(waveforms, lengths) + self.margin)
        if self.check is not None and self.check_weight > 0:
            loss = loss + self.check_weight * F.softplus(self.check.excess(waveforms, encoded[0]))
        return loss

    @torch.no_grad()
    def detected(self, waveforms: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.detector_log_odds(waveforms, lengths)) >= self.threshold

    @torch.no_grad()
    def predict(self, waveforms: torch.Tensor, lengths: torch.Tensor) -> list[str]:
        """The victim's output, marked ``[detected]`` where the detector flags the clip (never a target)."""
        outputs = self.victim.predict(waveforms, lengths)
        flagged = self.detected(waveforms, lengths).tolist()
        return [f"{DETECTED}{out}" if flag else out for out, flag in zip(outputs, flagged)]


def choose_targets(clips: Sequence[SourceClip], targets: Sequence[str], seed: int) -> list[str]:
    """A target per clip, drawn from ``targets`` with ``seed``, never the clip's own label."""
    rng = random.Random(seed)
    chosen = []
    for clip in clips:
        options = [t for t in targets if t != clip.label]
        if not options:
            raise ValueError(f"no target other than the clip's own label {clip.label!r} among {list(targets)}")
        chosen.append(rng.choice(options))
    return chosen


@torch.no_grad()
def detector_scores(detector: DetectorModule, audio: torch.Tensor, lengths: torch.Tensor, batch_size: int = 64) -> torch.Tensor:
    device = next(detector.parameters()).device
    parts = [detector.score(audio[i : i + batch_size].to(device), lengths[i : i + batch_size].to(device)).cpu()
             for i in range(0, audio.shape[0], batch_size)]
    return torch.cat(parts)


def summarise(weight: float, clean_scores: torch.Tensor, scores: torch.Tensor, fooled: torch.Tensor,
              snr: list[float], db_x: list[float], threshold: float,
              flooding: tuple[torch.Tensor, torch.Tensor] | None = None,
              over: tuple[torch.Tensor, torch.Tensor] | None = None) -> dict[str, Any]:
    """One row of the table; with ``flooding`` (noise-flooding scores of the clean and the attacked clips), also
    what the detector fused with noise flooding catches: flagged when either flags at its threshold, and by the
    calibrated rule with these clean clips as its reference (flagged when either score lies beyond nearly every
    clean clip's); with ``over`` too (over-confidence scores of the clean and the attacked clips: flags plus any
    rank term), what the mean of the detector and noise flooding catches with the over-confidence check (flagged
    when the mean plus the rank term reaches the threshold or the clip is over-confident)."""
    detected, clean_detected = scores >= threshold, clean_scores >= threshold
    successful = fooled.sum().item()
    ok = fooled.tolist()
    extra = {}
    if flooding is not None:
        clean_flooding, flooding_scores = flooding
        flooded, clean_flooded = flooding_scores >= NoiseFlooding.threshold, clean_flooding >= NoiseFlooding.threshold
        fused = detected | flooded
        extra = {
            "flooding_detection_rate": (flooded & fooled).sum().item() / max(successful, 1),
            "flooding_false_positive_rate": clean_flooded.float().mean().item(),
            "fused_detection_rate": (fused & fooled).sum().item() / max(successful, 1),
            "fused_false_positive_rate": (clean_detected | clean_flooded).float().mean().item(),
            "calibrated_detection_rate": (calibrated_max(scores, flooding_scores, NormalScores(clean_scores, clean_flooding))
                                          >= CALIBRATED_THRESHOLD)[fooled].sum().item() / max(successful, 1),
        }
        if over is not None:
            clean_over, attacked_over = over[0] >= 1, over[1] >= 1  # flags; a rank term alone stays below 1
            mean_over = (FUSION_RULES["mean"](scores, flooding_scores) + over[1] >= threshold) | attacked_over
            clean_mean_over = (FUSION_RULES["mean"](clean_scores, clean_flooding) + over[0] >= threshold) | clean_over
            extra |= {
                "over_confidence_detection_rate": (attacked_over & fooled).sum().item() / max(successful, 1),
                "mean_over_detection_rate": (mean_over & fooled).sum().item() / max(successful, 1),
                "mean_over_false_positive_rate": clean_mean_over.float().mean().item(),
            }
    return {
        "weight": weight,
        "clips": len(ok),
        "victim_success": successful / len(ok),
        "detection_rate": (detected & fooled).sum().item() / max(successful, 1),
        "fools_both": (fooled & ~detected).float().mean().item(),
        "mean_score": scores[fooled].mean().item() if successful else float("nan"),
        "false_positive_rate": clean_detected.float().mean().item(),
        "median_snr_db": statistics.median([s for s, o in zip(snr, ok) if o]) if successful else float("nan"),
        "median_db_x": statistics.median([d for d, o in zip(db_x, ok) if o]) if successful else float("nan"),
        **extra,
    }


def markdown(rows: list[dict[str, Any]]) -> str:
    fused, over = "fused_detection_rate" in rows[0], "mean_over_detection_rate" in rows[0]
    head = ("| detector weight | victim success | detection rate (of successful) | fools victim and detector | "
            "mean detector score | median SNR dB | median dB_x |")
    if fused:
        head += (" detection rate, noise flooding alone | detection rate, fused with noise flooding |"
                 " detection rate, calibrated fusion |")
    if over:
        head += " detection rate, over-confidence alone | detection rate, mean fusion with over-confidence |"
    lines = [head, "|---" * head.count(" |") + "|"]
    for r in rows:
        lines.append(f"| {r['weight']:g} | {r['victim_success']:.3f} | {r['detection_rate']:.3f} | {r['fools_both']:.3f} | "
                     f"{r['mean_score']:.3f} | {r['median_snr_db']:.1f} | {r['median_db_x']:.1f} |"
                     + (f" {r['flooding_detection_rate']:.3f} | {r['fused_detection_rate']:.3f} |"
                        f" {r['calibrated_detection_rate']:.3f} |" if fused else "")
                     + (f" {r['over_confidence_detection_rate']:.3f} | {r['mean_over_detection_rate']:.3f} |" if over else ""))
    return "\n".join(lines)


def run_adaptive(
    victim: str,
    detector: str,
    attack: Attack,
    source: LitAppDataModule,
    targets: list[str],
    weights: list[float] = [0.0, 1.0, 10.0],
    split: str = "test",
    max_clips: int = 64,
    batch_size: int = 16,
    threshold: float = 0.5,
    margin: float = 2.0,
    seed: int = 0,
    flooding_snr_db: float | None = None,
    flooding_draws: int = 8,
    over_confidence_quantile: float | None = None,
    over_confidence_statistic: Statistic = "margin",
    over_confidence_rank_weight: float = 0.0,
    check_weight: float = 0.0,
    device: str = "auto",
    wandb: bool = True,
    out_dir: str = "runs/adaptive",
) -> list[dict[str, Any]]:
    """Attack clean clips with and without the detector in the loss; report what the detector still catches.

    Args:
        victim: checkpoint of the victim (``lit-app fit`` output).
        detector: checkpoint of a trained DetectorModule (e.g. a grid run's ``checkpoints/best.ckpt``).
        attack: a gradient attack of :mod:`lit_app.attacks` (``class_path``/``init_args`` in YAML).
        source: the clean corpus (a KWSDataModule or ASRDataModule, as for the adversarial corpora).
        targets: target classes or phrases; each clip gets a random one other than its own label.
        weights: detector-loss weights; 0 is the plain attack.
        split: which split of the source to draw clips from (the detector should not have seen it).
        max_clips: clips attacked per weight.
        batch_size: clips per attack call.
        threshold: detection threshold on the detector's adversarial probability.
        margin: log-odds margin the adaptive loss aims below the threshold.
        seed: seed of the clip choice, the targets and the attack.
        flooding_snr_db: also fuse the detector with noise flooding at this SNR (:mod:`lit_app.defences`) and
            report what the pair catches; the attack itself still knows only the detector.
        flooding_draws: noisy copies per clip for noise flooding.
        over_confidence_quantile: with ``flooding_snr_db``, also report the over-confidence check
            (:class:`lit_app.defences.OverConfidence`, at this quantile of the victim's margins on the source's
            ``val`` clips), alone and with the mean of the detector and noise flooding; the attack does not know it.
        over_confidence_statistic: what the check ranks: ``margin`` or ``flatness`` (:class:`OverConfidence`).
        over_confidence_rank_weight: the check's ``rank_weight`` (:class:`OverConfidence`), added to the mean.
        check_weight: with the check, the attacker knows it too: at this weight it keeps the victim's confidence in
            the target below the natural median of that class (:class:`DetectorAwareVictim`), at every detector
            weight including 0; 0 leaves the check unknown to it.
        device: ``auto`` (CUDA when available), ``cpu`` or ``cuda:N``.
        wandb: also log the table and the curve to an offline W&B run (``WANDB_MODE`` may say otherwise).
        out_dir: where ``adaptive.json``, ``adaptive.md`` and the curve ``adaptive.png`` are written.
    """
    if check_weight > 0 and (flooding_snr_db is None or over_confidence_quantile is None):
        raise ValueError("check_weight needs the over-confidence check: set flooding_snr_db and "
                         "over_confidence_quantile too")
    device = resolve_device(device)
    plain = load_victim(victim, device)
    trained = load_module(detector, DetectorModule, map_location=device)
    source.prepare_data()
    clips = [c for c in source.attack_sources() if c.split == split]
    random.Random(seed).shuffle(clips)
    clips = clips[:max_clips]
    if not clips:
        raise ValueError(f"the source has no clips in its {split!r} split")
    wanted = choose_targets(clips, targets, seed)
    waves = [plain.prepare(read_audio(c.path, STRICT)) for c in clips]
    rows = []
    clean_batch = collate_detection([(w, 0) for w in waves])
    clean_scores = detector_scores(trained, clean_batch.audio, clean_batch.lengths)
    flooding = None if flooding_snr_db is None else NoiseFlooding(plain, flooding_snr_db, flooding_draws, seed)
    clean_flooding = None if flooding is None else flooding.score(clean_batch.audio, clean_batch.lengths)
    check = None
    if flooding is not None and over_confidence_quantile is not None:
        check = OverConfidence(plain, validation_clips(source), over_confidence_quantile,
                               statistic=over_confidence_statistic, rank_weight=over_confidence_rank_weight)
    clean_over = None if check is None else check.score(clean_batch.audio)
    for weight in weights:
        attacked = plain if weight == 0 and check_weight == 0 else DetectorAwareVictim(
            plain, trained, weight, threshold, margin, check if check_weight > 0 else None, check_weight)
        adversarial, lengths, fooled, snr, db_x = [], [], [], [], []
        for start in range(0, len(clips), batch_size):
            batch = collate_detection([(w, 0) for w in waves[start : start + batch_size]])
            output = attack(attacked, batch.audio, batch.lengths, wanted[start : start + batch_size], seed=seed + start)
            predictions = plain.predict(output.adversarial.to(plain.device), batch.lengths.to(plain.device))
            fooled += [p == t for p, t in zip(predictions, wanted[start : start + batch_size])]
            adversarial += list(output.adversarial)
            lengths.append(batch.lengths)
            snr += [r.snr_db for r in output.results]
            db_x += [r.db_x for r in output.results]
        width = max(a.numel() for a in adversarial)
        audio = torch.stack([F.pad(a, (0, width - a.numel())) for a in adversarial])
        scores = detector_scores(trained, audio, torch.cat(lengths))
        flooded = None if flooding is None else (clean_flooding, flooding.score(audio, torch.cat(lengths)))
        over = None if check is None else (clean_over, check.score(audio))
        rows.append(summarise(weight, clean_scores, scores, torch.tensor(fooled), snr, db_x, threshold, flooded, over))
        print(markdown(rows[-1:]).splitlines()[-1], flush=True)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    settings = {"victim": victim, "detector": detector, "attack": type(attack).__name__, "attack_settings": attack.settings(),
                "clips": len(clips), "split": split, "threshold": threshold, "margin": margin, "seed": seed,
                "flooding_snr_db": flooding_snr_db, "flooding_draws": flooding_draws,
                "over_confidence_quantile": over_confidence_quantile,
                "over_confidence_statistic": over_confidence_statistic,
                "over_confidence_rank_weight": over_confidence_rank_weight, "check_weight": check_weight}
    (out / "adaptive.json").write_text(json.dumps({"settings": settings, "rows": rows}, indent=2) + "\n")
    (out / "adaptive.md").write_text(markdown(rows) + "\n")
    log_adaptive(rows, settings, out, wandb)
    print(markdown(rows))
    return rows


CURVES = {"victim_success": "victim success", "detection_rate": "detection rate (of successful)",
          "fools_both": "fools victim and detector", "fused_detection_rate": "detection rate, fused with noise flooding",
          "mean_over_detection_rate": "detection rate, mean fusion with over-confidence"}


def log_adaptive(rows: list[dict[str, Any]], settings: dict[str, Any], out: Path, enabled: bool) -> None:
    """The adaptive attacker's curve (rates against the detector-loss weight) as ``adaptive.png`` and, with W&B,
    the same figure and the table."""
    weights = [row["weight"] for row in rows]
    series = {label: [row[key] for row in rows] for key, label in CURVES.items() if key in rows[0]}
    figure = save_curve_figure(weights, series, out / "adaptive.png", "detector-loss weight",
                               f"{settings['attack']} against the victim and the detector")
    log = StageLog(out.name, "adaptive", out, enabled, settings)
    log.images({"figures/adaptive": figure})
    log.table("adaptive", list(rows[0]), [list(row.values()) for row in rows])
    log.finish()


def main(args: list[str] | None = None) -> list[dict[str, Any]]:
    """Parse an adaptive-attack YAML (jsonargparse: ``-c``, ``--help``) and run it."""
    return run_command(run_adaptive, "lit-app adaptive", args)


if __name__ == "__main__":
    main(sys.argv[1:])
