"""Probe: what the over-confidence check flags with each statistic, and what it adds to noise flooding.

The check (:class:`lit_app.defences.OverConfidence`, ours) flags a clip whose confidence lies beyond ``quantile`` of
the keyword victim's natural validation clips of the class it answers. For each set and statistic (``margin``,
``flatness``) this prints the share of the set's attacked (or noise) test clips flagged, the share of its clean test
clips flagged, and the ROC-AUC of the training-free detector "noise flooding at 20 dB plus the flag" (a flagged clip
outranks every unflagged one, as in the fused detectors of ``lit-app noise-flooding``), attacked against clean;
with ``--rank_weight``, also that detector with the check's rank term (``OverConfidence``'s ``rank_weight``):

    python benchmarks/over_confidence_probe.py --victim runs/kws-demo-bn/checkpoints/best.ckpt \
        --sets '[data/adversarial/kws-pgd-more-bn-demo, data/adversarial/kws-bim-early-stop-bn-demo]'
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import get_args

import torch
from jsonargparse import CLI

sys.path.insert(0, str(Path(__file__).parent))
from detector_signal_probe import auroc, read_clips  # noqa: E402

from lit_app.attacks import load_victim  # noqa: E402
from lit_app.data.kws import KWSDataModule  # noqa: E402
from lit_app.defences import NoiseFlooding, OverConfidence  # noqa: E402
from lit_app.defences.over_confidence import Statistic, validation_clips  # noqa: E402

STATISTICS = get_args(Statistic)


def main(sets: list[Path], victim: str = "runs/kws-demo/checkpoints/best.ckpt",
         corpus: str = "data/synthetic_keywords", quantile: float = 0.995, seed: int = 0,
         rank_weight: float = 0.0) -> None:
    """Print one row per set: per statistic, attacked and clean test clips flagged, and flooding + flag's ROC-AUC.

    Args:
        sets: adversarial set folders made against ``victim`` (a folder with 'noise' in its name is scored as a
            noise control).
        victim: the keyword victim's checkpoint.
        corpus: the clean keyword corpus whose validation clips calibrate the check.
        quantile: the check's quantile of natural clips.
        seed: noise flooding's seed.
        rank_weight: also a column "flooding + flag + rank" per statistic, the rank term at this weight.
    """
    torch.set_num_threads(2)
    model = load_victim(victim)
    natural = validation_clips(KWSDataModule(root=corpus))
    checks = {name: OverConfidence(model, natural, quantile, statistic=name) for name in STATISTICS}
    flooding = NoiseFlooding(model, 20.0, 8, seed)
    parts = ("flagged", "clean flagged", "flooding + flag") + (("flooding + flag + rank",) if rank_weight else ())
    header = [f"{name}: {part}" for name in STATISTICS for part in parts]
    print("| set (attacked + clean) | flooding alone | " + " | ".join(header) + " |\n" + "|---" * (len(header) + 2) + "|")
    for root in map(Path, sets):
        kind = "noise" if "noise" in root.name else "adversarial"
        attacked, clean = read_clips(root, kind, {"test"}), read_clips(root, "clean", {"test"})
        flooded = [flooding.score(*clips) for clips in (attacked, clean)]
        cells = [f"{auroc(*flooded):.3f}"]
        for check in checks.values():
            (flags, ranks), (clean_flags, clean_ranks) = (check.flags_and_ranks(clips[0]) for clips in (attacked, clean))
            cells += [f"{flags.mean():.2f}", f"{clean_flags.mean():.2f}",
                      f"{auroc(flooded[0] + flags, flooded[1] + clean_flags):.3f}"]
            if rank_weight:
                ranked = (flooded[0] + flags + rank_weight * ranks, flooded[1] + clean_flags + rank_weight * clean_ranks)
                cells.append(f"{auroc(*ranked):.3f}")
        print(f"| {root.name} ({len(flooded[0])} + {len(flooded[1])}) | " + " | ".join(cells) + " |", flush=True)


if __name__ == "__main__":
    CLI(main, as_positional=False)
