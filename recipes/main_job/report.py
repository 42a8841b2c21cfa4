"""The closing report of the main job (``recipes/main_job/run.sh``): victims, attacks, detector grid and stage times, in one
page with the stages' figures (attack sets' histograms and spectrograms, ROC and DET curves, the adaptive attacker's
curve) embedded as images beside it in ``runs/``.

    python recipes/main_job/report.py                      # after scripts/demo.sh
    python recipes/main_job/report.py --scale quick        # after SCALE=quick scripts/demo.sh
    python recipes/main_job/report.py --victims '[kws]'    # one victim's line only
"""

from __future__ import annotations

import contextlib
import csv
import json
import sys
from pathlib import Path
from typing import Literal

import yaml

from lit_app.folders import read_corpus_info

Scale = Literal["quick", "demo"]
VICTIMS = {
    "kws": ("KWS victim, on unseen voices", ("test/acc",)),
    "asr": ("DeepSpeech victim, on unseen voices and sentences", ("test/cer", "test/wer")),
}
#: The anchor rows: (train, test) of the grid, and Nielsen & Tan's (2023, Table 2) ROC-AUC with IMFCC.
ANCHORS = {
    ("white", "white"): ("known white-box", 0.980),
    ("black", "black"): ("known black-box", 0.991),
    ("both", "both"): ("multi-condition", 0.989),
    ("white", "black"): ("unknown: white -> black", 0.946),
    ("black", "white"): ("unknown: black -> white", 0.672),
}
CONTROLS = [("white", "noise"), ("black", "noise"), ("both", "noise")]
FUSED = "CNN + noise flooding 20 dB, rule chosen on val"
REPO = Path(__file__).resolve().parents[2]
TIMES = Path("runs/demo-times.txt")
ATTACK_FIGURES = Path("runs/attack-sets")


def saved_path(scale: str) -> Path:
    return Path(f"runs/demo-summary-{scale}.md")


SAVED = saved_path("demo")  # every scale's report lies in runs/: images are linked from there


def victim_lines(scale: Scale, names: list[str] | None = None) -> list[str]:
    lines = []
    for name in names or list(VICTIMS):
        (title, keys), path = VICTIMS[name], Path(f"runs/{name}-{scale}/results.json")
        if not path.is_file():
            lines.append(f"- {title}: no results ({path} is missing)")
            continue
        metrics = json.loads(path.read_text())["metrics"]
        lines.append(f"- {title}: " + ", ".join(f"{k} = {metrics[k]:.4f}" for k in keys if k in metrics))
    return lines


def demo_corpora(scale: Scale) -> list[Path]:
    """Folders of the adversarial corpora the main job's grid reads, each once, in the grid's source order."""
    from lit_app.experiments.grid import load_source  # imports torch: only the full report needs it

    roots: dict[str, Path] = {}
    grid = yaml.safe_load((REPO / "configs" / "detector" / f"grid_{scale}.yaml").read_text())
    # Grid sources name their files relative to the repository root, where the main job runs; the corpus roots
    # they give stay relative, so they are found from the working directory as the rest of the report is.
    with contextlib.chdir(REPO):
        for spec in grid["sources"].values():
            for corpus in load_source(spec).corpora():
                roots.setdefault(str(corpus.root), corpus.root)
    return list(roots.values())


def corpus_lines(scale: Scale) -> list[str]:
    lines = ["| corpus | examples | success rate | mean dB_x | mean SNR (dB) | median queries | median iterations |",
             "|---|---|---|---|---|---|---|"]
    victims = {}
    for root in demo_corpora(scale):
        info = read_corpus_info(root) or {}
        attack = info.get("summary", {}).get("attack")
        if attack is None:
            lines.append(f"| {root.name} | not built | | | | | |")
            continue
        if info.get("victim_description"):
            victims[root.name] = info["victim_description"]
        lines.append(f"| {root.name} | {attack['examples']} | {attack['success_rate']} | {attack['mean_db_x_successful']} | "
                     f"{attack['mean_snr_db_successful']} | {attack['median_queries']} | {attack['median_iterations']} |")
    return lines + [""] + [f"- `{name}` attacks the {victim}" for name, victim in victims.items()]


def auroc_cells(path: Path, feature: str) -> dict[tuple[str, str], str]:
    """``mean ± std`` of the ROC-AUC of ``feature`` per ``(train, test)`` row of a results CSV (none if missing)."""
    if not path.is_file():
        return {}
    with path.open() as handle:
        return {(r["train"], r["test"]): f"{float(r['mean']):.3f} ± {float(r['std']):.3f}" for r in csv.DictReader(handle)
                if r["metric"] == "test/auroc" and r["feature"] == feature}


def headline(scale: Scale) -> list[str]:
    """The paper's method first: the CNN alone (IMFCC) beside Nielsen & Tan's numbers, the noise control, then the
    app's fused detector, named as ours."""
    cnn = auroc_cells(Path(f"runs/detector-grid-{scale}/results.csv"), "IMFCC")
    fused = auroc_cells(Path(f"runs/noise-flooding-{scale}/results.csv"), FUSED)
    if not cnn:
        return ["## The paper's method: the CNN alone", f"(runs/detector-grid-{scale}/results.csv is missing)", ""]
    lines = ["## The paper's method: the CNN alone (IMFCC, Nielsen & Tan's set-up), beside their numbers",
             "ROC-AUC, mean ± std over the grid's seeds.", "",
             "| train -> test | the CNN alone (paper's method) | Nielsen & Tan, IMFCC | ours, not the paper's: CNN fused "
             "with noise flooding |", "|---|---|---|---|"]
    for row, (name, anchor) in ANCHORS.items():
        lines.append(f"| {name} | {cnn.get(row, '-')} | {anchor:.3f} | {fused.get(row, '-')} |")
    for row in CONTROLS:
        lines.append(f"| noise control, trained on {row[0]} (0.5 wanted) | {cnn.get(row, '-')} | - | {fused.get(row, '-')} |")
    return lines + ["", "Why the CNN alone falls short at this scale, and its learning curve: docs/results.md, section 1.", ""]


def section(title: str, path: str, figures: list[str] = ()) -> list[str]:
    """A report section holding the Markdown file ``path`` (or saying that it is missing) and the PNGs that match
    the patterns ``figures`` beside it."""
    table = Path(path)
    return [f"## {title}", table.read_text() if table.is_file() else f"({table} is missing)", "",
            *images([png for pattern in figures for png in sorted(table.parent.glob(pattern))]), ""]


def images(paths: list[Path]) -> list[str]:
    """Markdown images of ``paths``, linked relative to the report (saved in ``runs/``), one line each."""
    return [f"![{path.stem}]({path.relative_to(SAVED.parent).as_posix()})" for path in paths]


def corpus_figures(scale: Scale) -> list[str]:
    """Each adversarial corpus's SNR / dB_x histograms and its first clean/adversarial/perturbation spectrograms,
    from ``lit-app generate`` (``runs/attack-sets/<corpus>/``)."""
    lines = []
    for root in demo_corpora(scale):
        folder = ATTACK_FIGURES / root.name
        found = [folder / name for name in ("snr_db_x.png", "pair0_spectrograms.png") if (folder / name).is_file()]
        if found:
            lines += [f"**{root.name}**", "", *images(found), ""]
    return lines


def report(scale: Scale) -> str:
    """The whole report as Markdown (missing parts say so)."""
    confusion = [Path(f"runs/{name}-{scale}/test_confusion_matrix.png") for name in VICTIMS]
    parts = [*headline(scale), "## Victims", *victim_lines(scale), "", *images([p for p in confusion if p.is_file()]), "",
             "## Adversarial corpora (successful examples for dB_x and SNR)",
             *corpus_lines(scale), "", *corpus_figures(scale)]
    curves = ["roc_*.png", "det_*.png"]
    parts += section("Detector grid", f"runs/detector-grid-{scale}/results.md", curves)
    parts += section("Noise flooding, alone and fused with the grid's IMFCC detectors", f"runs/noise-flooding-{scale}/results.md",
                     curves)
    parts += section("Adaptive attacker", f"runs/detector-adaptive-{scale}/adaptive.md", ["adaptive.png"])
    if TIMES.is_file():
        parts += ["## Stage wall times", "", *stage_time_lines(TIMES.read_text(), scale), "",
                  "Every run, in order:", "```", TIMES.read_text().strip(), "```"]
    return "\n".join(parts)


def stage_time_lines(log: str, scale: str) -> list[str]:
    """A table of this scale's stages from the stage log: runs of each, their total and the last run's seconds. An
    interrupted job that was resumed ran some stages more than once (a resumed stage logs only its own run)."""
    runs: dict[str, list[int]] = {}
    for line in log.splitlines():
        fields = line.split()
        if len(fields) == 5 and fields[1] == scale and fields[4] == "s" and fields[3].isdigit():
            runs.setdefault(fields[2], []).append(int(fields[3]))
    if not runs:
        return [f"No {scale} stage has finished yet."]
    lines = ["| stage | runs | total s | last run s |", "|---|---|---|---|"]
    lines += [f"| {name} | {len(seconds)} | {sum(seconds)} | {seconds[-1]} |" for name, seconds in runs.items()]
    total = sum(sum(seconds) for seconds in runs.values())
    return lines + [f"| all stages | | {total} | |"]


def summarise(scale: Scale = "demo", victims: list[Literal["kws", "asr"]] | None = None) -> None:
    """Print the main job's report and save it to ``runs/demo-summary-<scale>.md``.

    Args:
        scale: the configs the main job ran (``demo``: the default; ``quick``: ``SCALE=quick``).
        victims: print only these victims' lines (``kws``, ``asr``) and save nothing.
    """
    if victims:
        sys.stdout.write("\n".join(victim_lines(scale, victims)) + "\n")
        return
    text = report(scale)
    saved = saved_path(scale)
    saved.parent.mkdir(exist_ok=True)
    saved.write_text(text + "\n")
    sys.stdout.write(text + f"\n\n(saved to {saved})\n")


def main(args: list[str] | None = None) -> None:
    """Parse the command line (or ``args``) and run :func:`summarise`."""
    from lit_app.experiments.command import run_command

    run_command(summarise, "python recipes/main_job/report.py", args)


if __name__ == "__main__":
    main()
