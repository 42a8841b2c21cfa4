"""The closing report of ``scripts/demo.sh``: victims, attacks, detector grid and stage times, in one place.

    python -m lit_app.experiments.demo_summary            # after scripts/demo.sh
    python -m lit_app.experiments.demo_summary kws        # one victim's line only
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import yaml

from lit_app.data.synth.build import read_corpus_info

VICTIMS = {
    "kws": ("KWS victim, on unseen voices", Path("runs/kws-demo/results.json"), ("test/acc",)),
    "asr": ("DeepSpeech victim, on unseen voices and sentences", Path("runs/asr-demo/results.json"),
            ("test/cer", "test/wer")),
}
REPO = Path(__file__).resolve().parents[2]
# The main job builds exactly the corpora its detector grid reads (sources relative to the repository root).
MAIN_GRID = REPO / "configs" / "detector" / "grid_demo.yaml"
GRID = Path("runs/detector-grid-demo")
FLOODING = Path("runs/noise-flooding-demo/results.md")
ADAPTIVE = Path("runs/detector-adaptive-demo/adaptive.md")
TIMES = Path("runs/demo-times.txt")


def victim_lines(names: list[str] | None = None) -> list[str]:
    lines = []
    for name in names or list(VICTIMS):
        title, path, keys = VICTIMS[name]
        if not path.is_file():
            lines.append(f"- {title}: no results ({path} is missing)")
            continue
        metrics = json.loads(path.read_text())["metrics"]
        lines.append(f"- {title}: " + ", ".join(f"{k} = {metrics[k]:.4f}" for k in keys if k in metrics))
    return lines


def demo_corpora() -> list[Path]:
    """Folders of the adversarial corpora the main job's grid reads, each once, in the grid's source order."""
    from lit_app.experiments.grid import load_source  # imports torch: only the full report needs it

    roots: dict[str, Path] = {}
    for spec in yaml.safe_load(MAIN_GRID.read_text())["sources"].values():
        for corpus in load_source(str(REPO / spec)).corpora():
            roots.setdefault(str(corpus.root), corpus.root)
    return list(roots.values())


def corpus_lines() -> list[str]:
    lines = ["| corpus | examples | success rate | mean dB_x | mean SNR (dB) | median queries | median iterations |",
             "|---|---|---|---|---|---|---|"]
    for root in demo_corpora():
        attack = (read_corpus_info(root) or {}).get("summary", {}).get("attack")
        if attack is None:
            lines.append(f"| {root.name} | not built | | | | | |")
            continue
        lines.append(f"| {root.name} | {attack['examples']} | {attack['success_rate']} | {attack['mean_db_x_successful']} | "
                     f"{attack['mean_snr_db_successful']} | {attack['median_queries']} | {attack['median_iterations']} |")
    return lines


def report() -> str:
    """The whole report as Markdown (missing parts say so)."""
    parts = ["## Victims", *victim_lines(), "", "## Adversarial corpora (successful examples for dB_x and SNR)",
             *corpus_lines(), ""]
    table = GRID / "results.md"
    parts += ["## Detector grid", table.read_text() if table.is_file() else f"({table} is missing)", ""]
    parts += ["## Noise flooding, alone and fused with the grid's IMFCC detectors",
              FLOODING.read_text() if FLOODING.is_file() else f"({FLOODING} is missing)", ""]
    parts += ["## Adaptive attacker", ADAPTIVE.read_text() if ADAPTIVE.is_file() else f"({ADAPTIVE} is missing)", ""]
    if TIMES.is_file():
        parts += ["## Stage wall times (every run, in order)", "```", TIMES.read_text().strip(), "```"]
    return "\n".join(parts)


def main(victims: list[str] | None = None) -> None:
    """Print (and save) the whole report; with victim names (``kws``, ``asr``) print just their lines."""
    if victims:
        sys.stdout.write("\n".join(victim_lines(victims)) + "\n")
        return
    text = report()
    Path("runs").mkdir(exist_ok=True)
    Path("runs/demo-summary.md").write_text(text + "\n")
    sys.stdout.write(text + "\n\n(saved to runs/demo-summary.md)\n")


if __name__ == "__main__":
    main(sys.argv[1:])
