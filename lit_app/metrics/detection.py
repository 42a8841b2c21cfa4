"""Detection metrics: the torchmetrics binary family plus the equal error rate, and ROC figures.

Scores are the probability of the *adversarial* class (label 1); the decision threshold is 0.5.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from pathlib import Path

import torch
from torchmetrics import MetricCollection
from torchmetrics.classification import (
    BinaryAccuracy,
    BinaryAUROC,
    BinaryF1Score,
    BinaryPrecision,
    BinaryRecall,
    BinaryROC,
    BinarySpecificity,
    MultilabelAUROC,
)
from torchmetrics.wrappers import BootStrapper


def equal_error_rate(fpr: torch.Tensor, tpr: torch.Tensor) -> torch.Tensor:
    """The rate where false positives equal false negatives, on the ROC polyline ``(fpr, tpr)``.

    ``fpr`` and ``tpr`` rise together (torchmetrics' ROC order). The crossing of ``fpr`` with
    ``fnr = 1 - tpr`` is interpolated linearly between the two ROC points around it.
    """
    fpr, fnr = fpr.double(), 1.0 - tpr.double()
    gap = fpr - fnr  # rises from -1 (threshold above every score) to +1
    after = int(torch.nonzero(gap >= 0)[0, 0]) if bool((gap >= 0).any()) else len(gap) - 1
    if after == 0 or gap[after] == 0:
        return fpr[after].float()
    before = after - 1
    share = gap[before] / (gap[before] - gap[after])
    return (fpr[before] + share * (fpr[after] - fpr[before])).float()


class BinaryEER(BinaryROC):
    """Equal error rate of binary scores, from torchmetrics' exact ROC curve (``thresholds=None``)."""

    higher_is_better = False

    def compute(self) -> torch.Tensor:  # type: ignore[override]
        fpr, tpr, _ = super().compute()
        return equal_error_rate(fpr, tpr)


def detection_metrics(prefix: str) -> MetricCollection:
    """Accuracy, ROC-AUC, EER, precision, recall (= detection rate), F1 and specificity (= 1 - FPR)."""
    return MetricCollection(
        {
            "acc": BinaryAccuracy(),
            "auroc": BinaryAUROC(),
            "eer": BinaryEER(),
            "precision": BinaryPrecision(),
            "recall": BinaryRecall(),
            "f1": BinaryF1Score(),
            "specificity": BinarySpecificity(),
        },
        prefix=prefix,
    )


@functools.cache
def _bootstrapper(seeds: int, resamples: int, level: float) -> BootStrapper:
    # Building one copies its metric ``resamples`` times, which costs as much as using it: a table reuses it.
    tails = torch.tensor([(1 - level) / 2, (1 + level) / 2])
    return BootStrapper(MultilabelAUROC(num_labels=seeds, average="macro"), num_bootstraps=resamples, mean=False,
                        std=False, quantile=tails, sampling_strategy="multinomial")


def seed_mean_auroc_interval(
    scores: torch.Tensor, labels: torch.Tensor, resamples: int = 1000, level: float = 0.95, seed: int = 0
) -> tuple[float, float]:
    """Bootstrap interval of the mean ROC-AUC of several detectors (seeds) scored on the same clips.

    The standard deviation over seeds says nothing of how much the test clips themselves decide a result; this
    interval does: the clips are drawn again with replacement, normal and adversarial clips apart so that every
    draw keeps both classes at their sizes (the same draw for every seed), and the mean over seeds of each draw's
    ROC-AUC gives the percentile interval.

    Args:
        scores: ``[seeds, clips]`` scores (higher: more likely adversarial).
        labels: ``[clips]`` labels, 1 for adversarial.
        resamples: bootstrap draws.
        level: coverage of the interval.
        seed: seed of the draws (the global random state is left as it was).
    """
    if scores.ndim != 2 or scores.shape[1] != labels.numel():
        raise ValueError(f"expected scores [seeds, clips] and labels [clips], got {tuple(scores.shape)} and "
                         f"{tuple(labels.shape)}")
    labels = labels.long().view(-1)
    classes = [labels == label for label in (0, 1)]
    if not all(bool(members.any()) for members in classes):
        raise ValueError("a ROC-AUC needs normal (0) and adversarial (1) clips; these labels have one class only")
    seeds = scores.shape[0]
    # torchmetrics reads scores outside [0, 1] as logits and squashes them, and it decides that for each update
    # apart; an affine map into [0, 1] keeps every ranking (all a ROC-AUC sees) and treats both updates alike.
    least, most = scores.amin(1, keepdim=True), scores.amax(1, keepdim=True)
    scores = (scores - least) / (most - least).clamp_min(torch.finfo(scores.dtype).tiny)
    bootstrap = _bootstrapper(seeds, resamples, level)
    bootstrap.reset()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        for members in classes:  # each update draws within one class: a stratified bootstrap
            bootstrap.update(scores[:, members].T.float(), labels[members].view(-1, 1).expand(-1, seeds))
    low, high = bootstrap.compute()["quantile"].tolist()
    return low, high


def save_roc_figure(
    curves: Mapping[str, tuple[torch.Tensor, torch.Tensor]], path: str | Path, title: str = "ROC"
) -> Path:
    """Plot ``{name: (fpr, tpr)}`` curves with their AUC in the legend, write a PNG, return its path."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 5))
    for name, (fpr, tpr) in curves.items():
        auc = float(torch.trapezoid(tpr.double(), fpr.double()))
        ax.plot(fpr.cpu().numpy(), tpr.cpu().numpy(), label=f"{name} (AUC {auc:.3f})")
    ax.plot([0, 1], [0, 1], color="grey", linestyle=":", linewidth=1)
    ax.set(xlabel="false positive rate", ylabel="true positive rate", title=title, xlim=(0, 1), ylim=(0, 1.01))
    ax.legend(loc="lower right", fontsize=8)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100, bbox_inches="tight")
    plt.close(fig)
    return path
