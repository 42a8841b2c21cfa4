"""What Carlini & Wagner's attack achieves against a trained DeepSpeech victim on a handful of test sentences.

    python benchmarks/cw_victim_probe.py --victim runs/asr-mozilla-demo/checkpoints/best.ckpt \\
        --corpus data/synthetic_sentences_quick --attack configs/attacks/cw_deepspeech.yaml --clips 6 --seeds '[0,1,2]'

Not a speed benchmark: it prints, per attack seed, each clip's target, the victim's transcript of the written 16-bit
clip, dB_x, SNR and steps, then the success rate and dB_x as mean and standard deviation over the seeds, with the
victim (:meth:`~lit_app.models.asr.DeepSpeechModule.describe`), machine, date and command. The clips are the test
split's first ``--clips`` utterances of at most ``--max_seconds`` by id (unseen voices and sentences), each
attacked toward one of the white-box sets' three target phrases in turn, all in one batch.
"""

from __future__ import annotations

import datetime
import os
import platform
import statistics
import sys
import time

import torch
import yaml
from jsonargparse import CLI

from lit_app.attacks import CarliniWagner, load_victim
from lit_app.audio.io import AudioPolicy, read_audio
from lit_app.data.asr import ASRDataModule

TARGETS = ("stop", "open the front door", "turn off the lights in the kitchen")


def cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as info:
            return next(line.split(":", 1)[1].strip() for line in info if line.startswith("model name"))
    except (OSError, StopIteration):
        return platform.processor() or "unknown CPU"


def main(victim: str, corpus: str, attack: str = "configs/attacks/cw_deepspeech.yaml", clips: int = 6,
         max_seconds: float = 3.0, seeds: list[int] = [0, 1, 2], max_iterations: int | None = None) -> None:
    """Attack ``clips`` test sentences of ``corpus`` with the attack config ``attack`` once per seed.

    Args:
        victim: DeepSpeech checkpoint written by ``lit-app fit``.
        corpus: synthetic sentence corpus folder (its test split).
        attack: a CarliniWagner config (class_path and init_args).
        clips: test sentences attacked.
        max_seconds: longest sentence taken (the cost grows with length).
        seeds: attack seeds (the noise before each forward pass); the clips stay the same.
        max_iterations: overrides the config's step budget when given.
    """
    settings = yaml.safe_load(open(attack))["init_args"]
    if max_iterations is not None:
        settings["max_iterations"] = max_iterations
    cw = CarliniWagner(**settings)
    target_victim = load_victim(victim)
    data = ASRDataModule(root=corpus, corpus="synthetic")
    test = [u for u in sorted(data.load_set("test").utterances, key=lambda u: u.id) if (u.seconds or 0) <= max_seconds]
    chosen = test[:clips]
    waves = [read_audio(u.path, AudioPolicy()) for u in chosen]
    lengths = torch.tensor([w.numel() for w in waves])
    batch = torch.zeros(len(waves), int(lengths.max()))
    for row, wave in enumerate(waves):
        batch[row, : wave.numel()] = wave
    targets = [TARGETS[i % len(TARGETS)] for i in range(len(chosen))]
    clean = target_victim.predict(batch, lengths)
    print(f"# {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC, {cpu_name()}, {os.cpu_count()} cores, "
          f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    print(f"# command: python {' '.join(sys.argv)}")
    print(f"# victim: {target_victim.module.describe()} ({victim})")
    print(f"# attack: {attack} {cw.settings()}")
    rates, mean_db, seconds = [], [], []
    for seed in seeds:
        start = time.perf_counter()
        out = cw(target_victim, batch, lengths, targets, seed=seed)
        seconds.append(time.perf_counter() - start)
        print(f"\nseed {seed}: {seconds[-1]:.0f} s")
        print("| clip | s | clean transcript | target | transcript of the adversarial clip | ok | dB_x | SNR dB | steps |")
        print("|---|---|---|---|---|---|---|---|---|")
        for u, said, r in zip(chosen, clean, out.results):
            print(f"| {u.id} | {u.seconds:.2f} | {said} | {r.target} | {r.prediction} | {'yes' if r.success else 'no'} "
                  f"| {r.db_x:.1f} | {r.snr_db:.1f} | {r.iterations} |")
        rates.append(out.success_rate)
        won = [r.db_x for r in out.results if r.success]
        mean_db.append(statistics.fmean(won) if won else float("nan"))

    def spread(values: list[float]) -> str:
        return f"{statistics.fmean(values):.3f} ± {statistics.stdev(values):.3f}" if len(values) > 1 else f"{values[0]:.3f}"

    print(f"\nsuccess rate over {len(seeds)} seeds (mean ± std): {spread(rates)}; mean dB_x of the successes: "
          f"{spread(mean_db)}; seconds per seed: {spread(seconds)}")


if __name__ == "__main__":
    CLI(main, as_positional=False)
