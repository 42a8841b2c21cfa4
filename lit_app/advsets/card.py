"""The dataset card of an adversarial corpus: counts, success, distortion and query statistics, in README.md."""

from __future__ import annotations

import json
import math
import statistics
from collections import Counter
from pathlib import Path
from typing import Any

from lit_app.advsets.manifest import SPLITS, finite_mean

CARD_FILE = "README.md"


def _median(values: list[float | None]) -> float | None:
    finite = [v for v in values if v is not None and math.isfinite(v)]
    return statistics.median(finite) if finite else None


def attack_summary(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Success rate and distortion of the perturbed (non-clean) rows: all of them, and the successful ones."""
    perturbed = [r for r in rows if r["kind"] != "clean"]
    won = [r for r in perturbed if r["success"]]

    def rounded(value: float | None, digits: int = 2) -> float | None:
        return None if value is None else round(value, digits)

    return {
        "examples": len(perturbed),
        "successful": len(won),
        "success_rate": rounded(len(won) / len(perturbed), 4) if perturbed else None,
        "mean_db_x_successful": rounded(finite_mean([r["db_x"] for r in won])),
        "mean_snr_db_successful": rounded(finite_mean([r["snr_db"] for r in won])),
        "mean_db_x": rounded(finite_mean([r["db_x"] for r in perturbed])),
        "mean_snr_db": rounded(finite_mean([r["snr_db"] for r in perturbed])),
        "median_queries": _median([r["queries"] for r in perturbed]),
        "median_queries_successful": _median([r["queries"] for r in won]),
        "median_iterations": _median([r["iterations"] for r in perturbed]),
    }


def summarise(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Counts per split and kind, and the attack summary overall and per split."""
    counts = {split: dict(Counter(r["kind"] for r in rows if r["split"] == split)) for split in SPLITS}
    clean = [r for r in rows if r["kind"] == "clean"]
    return {
        "counts": counts,
        "attack": attack_summary(rows),
        "attack_per_split": {split: attack_summary([r for r in rows if r["split"] == split]) for split in SPLITS},
        "source_labels": dict(Counter(r["source_label"] for r in rows if r["kind"] != "clean").most_common(20)),
        "targets": dict(Counter(r["target"] for r in rows if r["kind"] != "clean").most_common(20)),
        "victim_accuracy_on_clean": round(sum(r["prediction"] == r["source_label"] for r in clean) / len(clean), 4)
        if clean else None,
        "groups_per_split": {split: len({r["group"] for r in rows if r["split"] == split}) for split in SPLITS},
    }


def write_card(root: Path, settings: dict[str, Any], summary: dict[str, Any], victim: str,
               victim_description: str = "") -> Path:
    """Write ``README.md``: what the corpus is, how it was made, and its numbers.

    Args:
        victim_description: which network the victim is (its module's ``describe()``), said beside its path.
    """
    attack = summary["attack"]
    described = f", {victim_description}" if victim_description else ""
    lines = [
        f"# Adversarial corpus `{root.name}`",
        "",
        f"Made by the `{settings['attack']}` attack against the victim `{victim}`{described} "
        f"(SHA-256 `{settings['victim_sha256'][:16]}...`). 16 kHz mono 16-bit WAV clips; `manifest.csv` has one "
        "row per clip (see `lit_app/advsets/manifest.py` for the columns). Splits follow the source "
        "corpus, so a clip and the adversarial examples made from it are always in the same split.",
        "",
        "## Counts",
        "",
        "| split | " + " | ".join(("clean", "adversarial", "noise")) + " | groups (voices) |",
        "|---|---|---|---|---|",
    ]
    for split in SPLITS:
        c = summary["counts"][split]
        lines.append(f"| {split} | {c.get('clean', 0)} | {c.get('adversarial', 0)} | {c.get('noise', 0)} | "
                     f"{summary['groups_per_split'][split]} |")
    lines += [
        "",
        "## Attack results",
        "",
        f"- success: {attack['successful']} of {attack['examples']} ({attack['success_rate']})",
        f"- mean dB_x of successful examples: {attack['mean_db_x_successful']} dB; mean SNR: "
        f"{attack['mean_snr_db_successful']} dB",
        f"- median queries (forward passes): {attack['median_queries']} (successful: {attack['median_queries_successful']});"
        f" median iterations: {attack['median_iterations']}",
        f"- victim accuracy on the clean clips: {summary['victim_accuracy_on_clean']}",
        "",
        "| split | examples | success rate | mean dB_x (succ.) | mean SNR (succ.) | median queries |",
        "|---|---|---|---|---|---|",
    ]
    for split in SPLITS:
        a = summary["attack_per_split"][split]
        lines.append(f"| {split} | {a['examples']} | {a['success_rate']} | {a['mean_db_x_successful']} | "
                     f"{a['mean_snr_db_successful']} | {a['median_queries']} |")
    lines += [
        "",
        "## Distributions (most common 20)",
        "",
        f"- source labels: {json.dumps(summary['source_labels'])}",
        f"- targets: {json.dumps(summary['targets'])}",
        "",
        "## Settings",
        "",
        "```json",
        json.dumps(settings, indent=2, sort_keys=True),
        "```",
        "",
    ]
    path = root / CARD_FILE
    tmp = path.with_name(f".{path.name}.part")
    tmp.write_text("\n".join(lines))
    tmp.replace(path)
    return path
