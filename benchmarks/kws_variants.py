"""Cost of the keyword victim's departures from TensorFlow's conv model: training and query throughput per variant.

    python benchmarks/kws_variants.py [--batch 32] [--query_batch 512] [--rounds 3]

Variants: ``tf`` (the default: TensorFlow's model and MFCCs), ``tf`` with each option of docs/departures.md
(``batch_norm``, ``valid`` padding, ``second_pool``), and ``old`` (the victim of the main job before
2026-12-05: all three on 8 kHz power-mel MFCCs with centred frames). Rounds visit every variant in turn, so a
busy machine slows them alike; each line gives the median over rounds. Random audio: the cost does not depend
on it. Training is forward + backward + SGD step on the whole module (MFCC front end included); queries are
inference-mode forwards of a large batch, as the genetic attack asks them.
"""

from __future__ import annotations

import statistics
from typing import Any

import torch
from jsonargparse import CLI
from kws_throughput import measure  # the sibling script: the same timed step

from lit_app.benchmarking import machine
from lit_app.models.kws import LEGACY_SETTINGS, KWSModule

VARIANTS: dict[str, dict[str, Any]] = {
    "tf": {},
    "tf+batch_norm": {"batch_norm": True},
    "tf+valid": {"padding": "valid"},
    "tf+second_pool": {"second_pool": True},
    "old": {**LEGACY_SETTINGS, "padding": "valid", "batch_norm": True},
}


def main(batch: int = 32, query_batch: int = 512, rounds: int = 3, steps: int = 10) -> None:
    """Print the median training and query throughput of each variant.

    Args:
        batch: training batch (the demo config's 32).
        query_batch: clips per inference call.
        rounds: rounds over all variants.
        steps: timed steps per measurement.
    """
    print(f"cpu: {machine('cpu')}; torch {torch.__version__}")
    models = {name: KWSModule(**settings) for name, settings in VARIANTS.items()}
    train: dict[str, list[float]] = {name: [] for name in models}
    query: dict[str, list[float]] = {name: [] for name in models}
    for _ in range(rounds):
        for name, model in models.items():
            train[name].append(measure(model, batch, "cpu", True, steps))
            query[name].append(measure(model, query_batch, "cpu", False, max(1, steps // 4)))
    for name, model in models.items():
        params = sum(p.numel() for p in model.parameters())
        print(f"{name:15s} {params:8d} parameters  train {statistics.median(train[name]):7.1f} clips/s (batch {batch})"
              f"  query {statistics.median(query[name]):7.1f} clips/s (batch {query_batch})")


if __name__ == "__main__":
    CLI(main)
