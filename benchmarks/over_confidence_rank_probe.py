"""Probe: how the fused detector's keyword-spotter cells move with the over-confidence check's rank weight.

``lit-app noise-flooding`` adds an over-confidence score to every fused score: a flag (1) for a clip flatter than
``quantile`` of the natural clips of its class, plus ``rank_weight`` times its rank through their upper half
(:class:`lit_app.defences.OverConfidence`). Rerunning the command for each weight takes 10-15 minutes; both other
halves of the fused score are saved by earlier runs. This probe reads them back (the trained CNNs' test scores from
the grid's run folders, noise flooding's from the noise-flooding run folder), scores each clip's flatness once, and
prints the ROC-AUC over seeds of ``mean(CNN, flooding) + flag + weight * rank`` for each weight, one row per weight,
each cell from the detector named for it (the leave-one-attack-out pairs of results 4.7)::

    python benchmarks/over_confidence_rank_probe.py --weights '[0.0, 0.1, 0.2, 0.3, 0.5]'    # 2 minutes on 2 cores

Only keyword-spotter sets: the check needs a classifier victim, and a cell whose clips the grid and noise flooding
scored differently (DeepSpeech's sets with their noise negatives) is left to the command itself.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch
from jsonargparse import CLI

sys.path.insert(0, str(Path(__file__).parent))
from detector_signal_probe import auroc  # noqa: E402

from lit_app.attacks import load_victim  # noqa: E402
from lit_app.data.kws import KWSDataModule  # noqa: E402
from lit_app.defences import OverConfidence  # noqa: E402
from lit_app.defences.over_confidence import validation_clips  # noqa: E402
from lit_app.experiments.noise_flooding import score_clips  # noqa: E402

# test condition -> (the grid's train condition whose detector scores it, noise flooding's source)
CELLS = {
    "black": ("all_but_black+noise", "black"),
    "kws_pgd": ("all_but_pgd+noise", "pgd"),
    "kws_pgd_more": ("all_but_pgd+noise", "pgd_more"),
    "kws_pgd_early_stop": ("all_but_pgd+noise", "pgd_early_stop"),
    "kws_bim_early_stop": ("all_but_pgd+noise", "bim_early_stop"),
    "kws_cw": ("all_but_cw+noise", "cw_kws"),
    "kws_square": ("all+noise", "square"),
    "kws_hsja": ("all+noise", "hsja"),
    "kws_ddn": ("all+noise", "ddn"),
    "kws_pgd_l2": ("all+noise", "pgd_l2"),
    "pgd_early_stop_noise": ("all+noise", "pgd_early_stop_noise"),
}


def aligned(grid_scores: dict, flooding_scores: dict) -> tuple[list[str], torch.Tensor, torch.Tensor, torch.Tensor]:
    """Paths, CNN scores, flooding scores and labels of the clips both runs scored, in flooding's order."""
    row = {path: i for i, path in enumerate(grid_scores["paths"])}
    keep = torch.tensor([row[path] for path in flooding_scores["paths"]])
    if not torch.equal(grid_scores["labels"][keep], flooding_scores["labels"]):
        raise ValueError("the grid and noise flooding label the same clips differently")
    return list(flooding_scores["paths"]), grid_scores["scores"][keep], flooding_scores["scores"], flooding_scores["labels"]


def main(weights: list[float] = [0.0, 0.1, 0.2, 0.3, 0.5],
         grid_dir: str = "runs/detector-grid-leave-one-attack-out-strong-victim-demo",
         flooding_dir: str = "runs/noise-flooding-leave-one-attack-out-strong-victim-demo",
         snr_db: float = 20.0, feature: str = "IMFCC", seeds: list[int] = [0, 1, 2],
         victim: str = "runs/kws-demo-bn/checkpoints/best.ckpt", corpus: str = "data/synthetic_keywords",
         quantile: float = 0.995) -> None:
    """Print one Markdown row per rank weight: each cell's ROC-AUC, mean ± std over ``seeds``.

    Args:
        weights: the rank weights to compare (0: flags alone).
        grid_dir: the leave-one-attack-out grid's output folder (its ``runs/<train>/<feature>/seed<k>/scores.pt``).
        flooding_dir: a noise-flooding output folder over the same test conditions (its saved flooding scores).
        snr_db: the noise level fused.
        feature: the grid's feature whose detectors are fused.
        seeds: detector and noise seeds, paired as the command pairs them.
        victim: the keyword victim every set was made against.
        corpus: the clean keyword corpus whose validation clips calibrate the check.
        quantile: the check's quantile of natural clips.
    """
    torch.set_num_threads(2)
    check = OverConfidence(load_victim(victim), validation_clips(KWSDataModule(root=corpus)), quantile, statistic="flatness")
    flooding_runs = Path(flooding_dir) / "runs" / f"noise flooding {snr_db:g} dB"
    cells: dict[str, list[tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]]] = {}
    for test, (train, source) in CELLS.items():
        parts: dict[str, tuple[float, float]] = {}  # path -> (flag, rank), scored once for every seed
        for seed in seeds:
            grid_scores = torch.load(Path(grid_dir) / "runs" / train / feature / f"seed{seed}" / "scores.pt",
                                     weights_only=True)[test]
            flooded = torch.load(flooding_runs / f"seed{seed}" / "scores.pt", weights_only=True)[source]
            paths, cnn, flooding, labels = aligned(grid_scores, flooded)
            unscored = [(path, 0) for path in paths if path not in parts]
            if unscored:
                scored, _ = score_clips(lambda audio, lengths: torch.stack(check.flags_and_ranks(audio)), unscored, 64)
                parts.update(zip((path for path, _ in unscored), scored.T.tolist()))
            flags, ranks = torch.tensor([parts[path] for path in paths]).T
            cells.setdefault(test, []).append(((cnn + flooding) / 2, flags, ranks, labels))
    print("| rank weight | " + " | ".join(CELLS) + " |\n" + "|---" * (len(CELLS) + 1) + "|")
    for weight in weights:
        row = []
        for runs in cells.values():
            fused = [(mean + flags + weight * ranks, labels) for mean, flags, ranks, labels in runs]
            aucs = torch.tensor([auroc(scores[labels == 1], scores[labels == 0]) for scores, labels in fused])
            row.append(f"{aucs.mean():.3f} ± {aucs.std():.3f}")
        print(f"| {weight:g} | " + " | ".join(row) + " |", flush=True)


if __name__ == "__main__":
    CLI(main, as_positional=False)
