"""What the stages' figures and offline W&B runs cost: wall time of each PNG and of one offline W&B run.

    PYTHONPATH=$PWD .venv/bin/python benchmarks/stage_figures_cost.py [--repeats 5]

Prints the median and the spread (min-max) over repeats, with the machine and the date. Synthetic inputs: a 1 s
clip and its copy with a -40 dB_x perturbation, a 200-point ROC curve, 300 SNR / dB_x values.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import torch


def timed(function, repeats: int) -> list[float]:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    from lit_app.benchmarking import machine
    from lit_app.experiments.figures import save_det_figure, save_histograms, save_pair_figure
    from lit_app.experiments.stage_log import StageLog

    torch.manual_seed(0)
    clean = 0.3 * torch.randn(16000)
    adversarial = clean + 0.003 * torch.randn(16000)
    fpr = torch.linspace(0, 1, 200)
    curve = (fpr, fpr.sqrt())
    values = torch.randn(300).tolist()
    folder = Path(tempfile.mkdtemp())
    os.environ.setdefault("WANDB_MODE", "offline")
    os.environ.setdefault("WANDB_SILENT", "true")

    def wandb_run() -> None:
        log = StageLog("benchmark", "benchmark", folder)
        log.images({"det": folder / "det.png"})
        log.table("results", ["a", "b"], [[1, 2.0]])
        log.finish()

    rows = {
        "DET figure": lambda: save_det_figure({"x": curve}, folder / "det.png"),
        "clean/adversarial/perturbation spectrograms": lambda: save_pair_figure(clean, adversarial, folder / "pair.png"),
        "SNR / dB_x histograms": lambda: save_histograms({"SNR": values, "dB_x": values}, folder / "hist.png"),
        "offline W&B run (1 image, 1 table)": wandb_run,
    }
    print(f"{machine('cpu')} ({os.cpu_count()} CPUs), {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC, "
          f"{args.repeats} repeats after a first call")
    for name, function in rows.items():
        (first,) = timed(function, 1)  # imports, caches, W&B's service process
        times = timed(function, args.repeats)
        print(f"{name}: median {statistics.median(times):.3f} s (min {min(times):.3f}, max {max(times):.3f}; "
              f"first call {first:.3f} s)")


if __name__ == "__main__":
    main()
