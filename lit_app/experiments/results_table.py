"""Grid results as tables laid out like the paper's (rows train -> test, columns features, mean +/- std)."""

from __future__ import annotations

import csv
import statistics
from collections import defaultdict
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from pathlib import Path

TABLE_METRICS = {
    "test/auroc": "ROC-AUC",
    "test/eer": "EER",
    "test/acc": "accuracy",
    "test/recall": "flagged share of the test set's positives (detection rate; on a noise control: false alarms)",
    "test/fpr": "false-positive rate on normal clips",
}


@dataclass(frozen=True)
class RunResult:
    """Metrics of one detector (train condition, feature, seed) on one test condition."""

    train: str
    test: str
    feature: str
    seed: int
    metrics: dict[str, float]


def row_kind(train_sources: Collection[str], test_sources: Collection[str], control: bool) -> str:
    """``known``, ``unknown``, ``multi-condition``, ``partly known`` or ``control`` for a train -> test row."""
    if control:
        return "control"
    train_set, test_set = set(train_sources), set(test_sources)
    if test_set <= train_set:
        return "multi-condition" if len(train_set) > 1 else "known"
    if not test_set & train_set:
        return "unknown"
    return "partly known"


def mean_std(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (0 for a single value)."""
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def format_cell(values: Sequence[float]) -> str:
    if not values:
        return "-"
    mean, std = mean_std(values)
    return f"{mean:.3f} ± {std:.3f}" if len(values) > 1 else f"{mean:.3f}"


@dataclass
class ResultsTable:
    """Collects run results and renders them.

    Args:
        results: one entry per (train, test, feature, seed).
        kinds: ``{(train, test): kind}`` from :func:`row_kind`.
        features: column order.
        rows: row order as ``(train, test)`` pairs.
        intervals: ``{(train, test, feature): (low, high)}``, a 95% bootstrap interval over test clips of the mean
            ROC-AUC over seeds (:func:`lit_app.metrics.detection.seed_mean_auroc_interval`), for the cells that
            have one.
    """

    results: list[RunResult]
    kinds: dict[tuple[str, str], str]
    features: list[str]
    rows: list[tuple[str, str]]
    intervals: dict[tuple[str, str, str], tuple[float, float]] = field(default_factory=dict)

    def values(self, metric: str) -> dict[tuple[str, str, str], list[float]]:
        cells: dict[tuple[str, str, str], list[float]] = defaultdict(list)
        for r in self.results:
            if metric in r.metrics:
                cells[(r.train, r.test, r.feature)].append(r.metrics[metric])
        return cells

    def markdown(self, metric: str = "test/auroc") -> str:
        """A Markdown table of ``metric``: rows ``train -> test (kind)``, one column per feature; the best
        feature of each row in bold (highest, or lowest for error rates)."""
        cells = self.values(metric)
        lower_is_better = metric in ("test/eer", "test/fpr")
        lines = ["| train -> test | " + " | ".join(self.features) + " |", "|---|" + "---|" * len(self.features)]
        for train, test in self.rows:
            means = {f: mean_std(cells[(train, test, f)])[0] for f in self.features if cells.get((train, test, f))}
            best = (min if lower_is_better else max)(means, key=means.get) if len(means) > 1 else None
            row = []
            for feature in self.features:
                text = format_cell(cells.get((train, test, feature), []))
                row.append(f"**{text}**" if feature == best else text)
            lines.append(f"| {train} -> {test} ({self.kinds[(train, test)]}) | " + " | ".join(row) + " |")
        return "\n".join(lines)

    def interval_markdown(self) -> str:
        """A Markdown table of the bootstrap intervals, in the rows and columns that have them."""
        features = [f for f in self.features if any(key[2] == f for key in self.intervals)]
        lines = ["| train -> test | " + " | ".join(features) + " |", "|---|" + "---|" * len(features)]
        for train, test in self.rows:
            cells = [self.intervals.get((train, test, f)) for f in features]
            if any(cells):
                text = [f"{cell[0]:.3f} - {cell[1]:.3f}" if cell else "-" for cell in cells]
                lines.append(f"| {train} -> {test} ({self.kinds[(train, test)]}) | " + " | ".join(text) + " |")
        return "\n".join(lines)

    def aggregate_rows(self) -> list[list[object]]:
        """One row per cell and metric: train, test, kind, feature, metric, mean, std and the number of seeds."""
        rows: list[list[object]] = []
        for metric in TABLE_METRICS:
            cells = self.values(metric)
            for train, test in self.rows:
                for feature in self.features:
                    values = cells.get((train, test, feature))
                    if values:
                        mean, std = mean_std(values)
                        rows.append([train, test, self.kinds[(train, test)], feature, metric, mean, std, len(values)])
        return rows

    def document(self, title: str) -> str:
        """``results.md``: a table per metric (and the bootstrap intervals under the ROC-AUC's)."""
        seeds = sorted({r.seed for r in self.results})
        parts = [f"# {title}", "", f"Mean ± sample std over seeds {seeds}; bold: best feature of the row.", ""]
        for metric, caption in TABLE_METRICS.items():
            if self.values(metric):
                parts += [f"## {caption} (`{metric}`)", "", self.markdown(metric), ""]
                if metric == "test/auroc" and self.intervals:
                    parts += ["95% bootstrap interval of the ROC-AUC's mean over seeds, from the test clips (drawn again "
                              "with replacement, each class apart): how much the few clips of a test set, rather than "
                              "the seed, decide a cell.", "", self.interval_markdown(), ""]
        return "\n".join(parts)

    def write(self, folder: str | Path, title: str = "Detector grid") -> dict[str, Path]:
        """Write ``results.md`` (a table per metric), ``results.csv`` (aggregates), ``runs.csv`` (every run) and,
        when there are intervals, ``intervals.csv``."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        paths = {"markdown": folder / "results.md", "csv": folder / "results.csv", "runs": folder / "runs.csv"}
        if self.intervals:
            paths["intervals"] = folder / "intervals.csv"
            write_csv(paths["intervals"], ["train", "test", "kind", "feature", "metric", "low", "high", "level"],
                      [[train, test, self.kinds[(train, test)], feature, "test/auroc", f"{low:.6f}", f"{high:.6f}", "0.95"]
                       for (train, test, feature), (low, high) in self.intervals.items()])
        paths["markdown"].write_text(self.document(title))
        write_csv(paths["csv"], ["train", "test", "kind", "feature", "metric", "mean", "std", "n"],
                  [[*row[:5], f"{row[5]:.6f}", f"{row[6]:.6f}", row[7]] for row in self.aggregate_rows()])
        metric_names = sorted({k for r in self.results for k in r.metrics})
        write_csv(paths["runs"], ["train", "test", "feature", "seed", *metric_names],
                  [[r.train, r.test, r.feature, r.seed, *(f"{r.metrics.get(m, float('nan')):.6f}" for m in metric_names)]
                   for r in self.results])
        return paths


def write_csv(path: Path, header: list[str], rows: list[list[object]]) -> None:
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)
