"""Parent selection of the genetic attack against one keyword-spotting victim: the paper's rule and proportional ones.

Attacks ``clips`` test clips the victim classifies correctly (drawn at random, one random target keyword each) with
the paper's selection (``softmax(probability / 0.01)``) and with selection on log-probabilities at each of
``temperatures`` (1: parents drawn in proportion to their target probability), and prints one JSON line per rule:
targeted success, median queries, mean SNR of the successful examples, seconds. Everything but the selection is
the paper's (configs/attacks/genetic_kws.yaml). 40 clips take 1.5 to 2.5 minutes per rule on 2 Zen 5 cores against
the 96.5% victim of configs/kws/full.yaml:

    python benchmarks/genetic_selection_probe.py --temperatures '[2, 1, 0.5, 0.25]'   # after training that victim
"""

from __future__ import annotations

import json
import random
import statistics
import time

import torch
from jsonargparse import CLI

from lit_app.advsets.plan import screen
from lit_app.attacks import GeneticAttack
from lit_app.attacks.victims import load_victim
from lit_app.audio.io import read_audio
from lit_app.data.kws import KWSDataModule


def main(
    checkpoint: str = "runs/kws-full/checkpoints/best.ckpt",
    root: str = "data/synthetic_keywords",
    clips: int = 40,
    temperatures: list[float] = [1.0],
    seed: int = 0,
) -> None:
    """Print one JSON line per selection rule.

    Args:
        checkpoint: the keyword-spotting victim.
        root: its corpus (Speech Commands layout); its test split is attacked.
        clips: test clips to attack.
        temperatures: temperatures of selection on log-probabilities, one run each, after the paper's rule.
        seed: seed of the clip and target draws and of the attacks.
    """
    victim = load_victim(checkpoint)
    data = KWSDataModule(root=root)
    data.prepare_data()
    sources = [c for c in data.attack_sources() if c.split == "test"]
    rng = random.Random(seed)
    rng.shuffle(sources)
    keywords = [label for label in victim.labels if not label.startswith("_")]
    # The clips an attack set may use (audible, recognised correctly), in the shuffled order.
    chosen = [c for c, ok in zip(sources, screen(victim, sources, require_correct=True)) if ok][:clips]
    targets = [rng.choice([k for k in keywords if k != source.label]) for source in chosen]
    x = torch.stack([read_audio(source.path) for source in chosen])
    lengths = torch.full((len(chosen),), x.shape[1])
    rules = [("probability", 0.01)] + [("log_probability", t) for t in temperatures]
    for fitness, temperature in rules:
        start = time.time()
        results = GeneticAttack(fitness=fitness, temperature=temperature)(victim, x, lengths, targets, seed=seed).results
        won = [r for r in results if r.success]
        print(json.dumps({
            "fitness": fitness, "temperature": temperature, "clips": len(results),
            "success": round(len(won) / len(results), 4),
            "median_queries": statistics.median(r.queries for r in results),
            "mean_snr_db_successful": round(statistics.fmean(r.snr_db for r in won), 2) if won else None,
            "seconds": round(time.time() - start),
        }), flush=True)


if __name__ == "__main__":
    CLI(main)
