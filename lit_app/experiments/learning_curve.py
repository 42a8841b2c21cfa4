"""Learning curves from a detector grid: ROC-AUC against the number of adversarial clips a detector trained on.

A grid names its curves (``curves: {white: [white-18, white-36, ...]}``, train conditions in growing size, usually
data modules serving prefixes of one set's train split through ``train_sources``). Each curve gets a table (a row
per size, a column per test condition, mean ± std over seeds) and, per feature, a figure panel.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from lit_app.experiments.figures import pyplot, save_png
from lit_app.experiments.results_table import ResultsTable, format_cell, mean_std


def check_curves(curves: Mapping[str, list[str]], train: Mapping[str, list[str]]) -> None:
    """Refuse a curve that names a train condition the grid does not have."""
    for name, conditions in curves.items():
        unknown = [c for c in conditions if c not in train]
        if unknown or not conditions:
            raise ValueError(f"learning curve {name!r} names unknown train conditions {unknown} (have {sorted(train)})")


def curve_tests(table: ResultsTable, conditions: list[str]) -> list[str]:
    """The test conditions a curve's train conditions were tested on, in the table's row order."""
    return list(dict.fromkeys(test for train, test in table.rows if train in conditions))


def curve_markdown(table: ResultsTable, curves: Mapping[str, list[str]], clips: Mapping[str, dict[str, int]]) -> str:
    """``learning_curve.md``: per curve and feature, ROC-AUC by training size (rows) and test condition (columns)."""
    auc = table.values("test/auroc")
    parts = ["# Learning curves", "", "ROC-AUC, mean ± sample std over seeds, against the clips each detector trained "
             "on (successful adversarial examples, and the normal clips beside them).", ""]
    for name, conditions in curves.items():
        tests = curve_tests(table, conditions)
        for feature in table.features:
            parts += [f"## {name}, {feature}", "",
                      "| train condition | adversarial clips | normal clips | " + " | ".join(
                          f"-> {c} ({table.kinds[(conditions[0], c)]})" for c in tests) + " |",
                      "|---|---|---|" + "---|" * len(tests)]
            for condition in conditions:
                counts = clips.get(condition, {})
                cells = [format_cell(auc.get((condition, c, feature), [])) for c in tests]
                parts.append(f"| {condition} | {counts.get('adversarial', '-')} | {counts.get('normal', '-')} | "
                             + " | ".join(cells) + " |")
            parts.append("")
    return "\n".join(parts)


def save_curve_figure(table: ResultsTable, curves: Mapping[str, list[str]], clips: Mapping[str, dict[str, int]],
                      feature: str, path: Path) -> Path:
    """One panel per curve: ROC-AUC (mean, std bars) against adversarial training clips, a line per test condition."""
    plt = pyplot()
    auc = table.values("test/auroc")
    fig, axes = plt.subplots(1, len(curves), figsize=(5 * len(curves), 4), squeeze=False, sharey=True)
    for axis, (name, conditions) in zip(axes[0], curves.items()):
        sizes: set[int] = set()
        for test in curve_tests(table, conditions):
            points = [(clips[t]["adversarial"], *mean_std(auc[(t, test, feature)])) for t in conditions
                      if t in clips and auc.get((t, test, feature))]
            if points:
                x, mean, std = zip(*points)
                sizes.update(x)
                axis.errorbar(x, mean, yerr=std, marker="o", capsize=3, label=test)
        axis.set_xscale("log")
        axis.set_xticks(sorted(sizes), [str(size) for size in sorted(sizes)])  # the sizes themselves, not 10^k
        axis.minorticks_off()
        axis.axhline(0.5, color="grey", linewidth=0.8, linestyle=":")
        axis.set(title=f"trained on {name} ({feature})", xlabel="adversarial training clips", ylim=(0, 1.02))
        axis.legend(title="tested on", fontsize="small")
    axes[0][0].set_ylabel("ROC-AUC")
    return save_png(fig, path)


def write_learning_curves(out: Path, table: ResultsTable, curves: Mapping[str, list[str]],
                          clips: Mapping[str, dict[str, int]]) -> list[Path]:
    """``learning_curve.md`` and a ``learning_curve_<feature>.png`` per feature in ``out``; returns the figures."""
    (out / "learning_curve.md").write_text(curve_markdown(table, curves, clips))
    return [save_curve_figure(table, curves, clips, feature, out / f"learning_curve_{feature}.png")
            for feature in table.features]
