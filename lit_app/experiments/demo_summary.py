"""The closing report of ``scripts/demo.sh``: victims, attacks, detector grid and stage times, in one place.

    python -m lit_app.experiments.demo_summary            # after scripts/demo.sh
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

VICTIMS = {
    "KWS victim (runs/kws-demo)": (Path("runs/kws-demo/results.json"), ("test/acc",)),
    "DeepSpeech victim (runs/asr-demo)": (Path("runs/asr-demo/results.json"), ("test/cer", "test/wer")),
}
CORPORA = ("blackbox-demo", "whitebox-demo", "kws-pgd-demo", "kws-cw-yes-right-demo",
           "blackbox-noise-demo", "whitebox-noise-demo")
ADVERSARIAL_ROOT = Path("data/adversarial")
GRID = Path("runs/detector-grid-demo")
ADAPTIVE = Path("runs/detector-adaptive-demo/adaptive.md")
TIMES = Path("runs/demo-times.txt")


def victim_lines() -> list[str]:
    lines = []
    for name, (path, keys) in VICTIMS.items():
        if not path.is_file():
            lines.append(f"- {name}: no results ({path} is missing)")
            continue
        metrics = json.loads(path.read_text())["metrics"]
        lines.append(f"- {name}: " + ", ".join(f"{k} = {metrics[k]:.4f}" for k in keys if k in metrics))
    return lines


def corpus_lines() -> list[str]:
    lines = ["| corpus | examples | success rate | mean dB_x | mean SNR (dB) | median queries | median iterations |",
             "|---|---|---|---|---|---|---|"]
    for name in CORPORA:
        info_file = ADVERSARIAL_ROOT / name / "corpus.json"
        info = json.loads(info_file.read_text()) if info_file.is_file() else {}
        attack = info.get("summary", {}).get("attack")
        if attack is None:
            lines.append(f"| {name} | not built | | | | | |")
            continue
        lines.append(f"| {name} | {attack['examples']} | {attack['success_rate']} | {attack['mean_db_x_successful']} | "
                     f"{attack['mean_snr_db_successful']} | {attack['median_queries']} | {attack['median_iterations']} |")
    return lines


def report() -> str:
    """The whole report as Markdown (missing parts say so)."""
    parts = ["## Victims", *victim_lines(), "", "## Adversarial corpora (successful examples for dB_x and SNR)",
             *corpus_lines(), ""]
    table = GRID / "results.md"
    parts += ["## Detector grid", table.read_text() if table.is_file() else f"({table} is missing)", ""]
    parts += ["## Adaptive attacker", ADAPTIVE.read_text() if ADAPTIVE.is_file() else f"({ADAPTIVE} is missing)", ""]
    if TIMES.is_file():
        parts += ["## Stage wall times (latest run of each stage)", "```", TIMES.read_text().strip(), "```"]
    return "\n".join(parts)


def main() -> None:
    text = report()
    Path("runs").mkdir(exist_ok=True)
    Path("runs/demo-summary.md").write_text(text + "\n")
    sys.stdout.write(text + "\n\n(saved to runs/demo-summary.md)\n")


if __name__ == "__main__":
    main()
