"""Detection metrics: the torchmetrics binary family plus the equal error rate, and ROC figures.

Scores are the probability of the *adversarial* class (label 1); the decision threshold is 0.5.
"""

from __future__ import annotations

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
)


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
